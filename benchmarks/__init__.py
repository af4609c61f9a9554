"""Benchmarks of normcore against native PyTorch; run ``python benchmarks/layers.py``."""
