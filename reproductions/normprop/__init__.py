"""Reproduction of the Normalization Propagation paper (Arpit et al. 2016): the CPU-scale NIN experiment (cpu.py)."""
