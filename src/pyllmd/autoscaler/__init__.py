"""The workload variant autoscaler: sizes model variants from vLLM and EPP metrics."""
