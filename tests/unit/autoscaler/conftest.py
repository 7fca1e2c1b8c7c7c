"""Shared fixtures of the autoscaler unit tests: `kube`, a fresh fake API server per test."""

from tests.unit.autoscaler.kubefake import kube

__all__ = ["kube"]
