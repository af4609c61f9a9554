"""Shared pieces of every reproduction: atomic I/O, the environment manifest, the results schema, and
the training engine (classification, detection, segmentation, stylization)."""
