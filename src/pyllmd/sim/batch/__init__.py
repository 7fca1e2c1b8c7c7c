"""Batch-aware engine model: accelerators, model architectures, step time and vLLM v1's scheduler.

A pure package (standard library and `pyllmd.core` only): every function works on plain
data and virtual time, so the live simulator and a virtual-time replay can share it.
"""
