"""Reproductions of the six papers: a shared engine (``reproductions.common``) and one package per paper."""
