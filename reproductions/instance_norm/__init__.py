"""Reproduction of the Instance Normalization paper: the CPU-scale stylization experiment (``cpu.py``)."""
