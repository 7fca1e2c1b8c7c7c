"""Pieces of local-stack files shared by the autoscaler e2e tests."""

SATURATION_CONFIG_MAP = """\
  - metadata:
      name: wva-saturation-scaling-config
      namespace: workload-variant-autoscaler-system
    data:
      default: |
        kvCacheThreshold: 0.80
        queueLengthThreshold: 5
        kvSpareTrigger: 0.1
        queueSpareTrigger: 3
"""
"""The shipped default saturation thresholds, as a `configMaps` list entry."""
