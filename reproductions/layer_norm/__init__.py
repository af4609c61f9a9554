"""Reproduction of the Layer Normalization paper (Ba, Kiros & Hinton 2016): the CPU-scale Figure 6 and
LN-LSTM experiments (cpu.py)."""
