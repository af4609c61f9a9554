"""Reproduction of the Batch Normalization paper (Ioffe & Szegedy 2015): the CPU-scale Figure 1 experiment (cpu.py)."""
