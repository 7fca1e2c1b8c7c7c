"""Shared fixtures of the autoscaler unit tests: `kube`, a fresh fake API server per test,
and `epp`, an endpoint picker's /metrics on a loopback port."""

from tests.unit.autoscaler.eppfake import epp
from tests.unit.autoscaler.kubefake import kube

__all__ = ["epp", "kube"]
