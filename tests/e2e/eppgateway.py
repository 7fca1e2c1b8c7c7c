"""`pyllmd epp` as a process with a real Envoy in front: the gateway of the EPP e2e tests.

One place for what every EPP e2e test starts the same way: the EPP through the
real CLI on loopback ports, its `/metrics` page, Envoy's gateway bootstrap
(ext_proc with health checking) and an `openai` client talking only to Envoy.
Each test passes what differs: the endpoint source (`--static-endpoints` or a
pool on the fake API server) and the flags and config.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import aiohttp
from openai import AsyncOpenAI

from pyllmd.core.promtext import Sample, parse_samples
from pyllmd.stack.envoy import EnvoyProcess, envoy_bootstrap
from tests.e2e.harness import LOOPBACK, ManagedProcess, free_port


def value(samples: Sequence[Sample], name: str, **labels: str) -> float:
    """The sum of the samples `name{labels}`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


class EppGateway:
    """`pyllmd epp *args` and Envoy in front of it; `start` waits for the EPP first."""

    def __init__(
        self, args: Sequence[str], work: Path | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.work = work or Path(tempfile.mkdtemp(prefix="epp-gateway-"))
        grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
        argv = [
            sys.executable, "-m", "pyllmd", "epp", f"--bind-address={LOOPBACK}",
            f"--grpc-port={grpc_port}", f"--grpc-health-port={health_port}",
            f"--metrics-port={metrics_port}", *args,
        ]  # fmt: skip
        self.epp = ManagedProcess("pyllmd-epp", argv, env)
        self.metrics_url = f"http://{LOOPBACK}:{metrics_port}/metrics"
        listen = free_port()
        bootstrap = envoy_bootstrap(listen, grpc_port, free_port(), health_check=True)
        self.envoy = EnvoyProcess(self.work, bootstrap)
        self.url = f"http://{LOOPBACK}:{listen}"
        self.client = AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=30
        )
        self._closed = False

    async def metrics(self, token: str = "") -> tuple[int, str]:
        """The EPP's `/metrics` page (status, text), with a bearer token if given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as s,
            s.get(self.metrics_url, headers=headers) as r,
        ):
            return r.status, await r.text()

    async def samples(self, token: str = "") -> list[Sample]:
        status, text = await self.metrics(token)
        assert status == 200, f"/metrics answered {status}: {text[:200]}"
        return list(parse_samples(text))

    async def wait_for(
        self, what: str, probe: Callable[[list[Sample]], bool], token: str = ""
    ) -> list[Sample]:
        """Poll `/metrics` until `probe` holds (bounded: 20 s)."""
        samples: list[Sample] = []
        for _ in range(400):
            try:
                samples = await self.samples(token)
            except (aiohttp.ClientError, AssertionError):
                samples = []
            if samples and probe(samples):
                return samples
            await asyncio.sleep(0.05)
        shown = [s for s in samples if s.name.startswith("inference_")][:20]
        raise AssertionError(f"EPP never showed {what}: {shown}")

    async def start(self, ready_pods: int | None = None, token: str = "") -> None:
        """Start Envoy once the EPP serves `/metrics` (and counts `ready_pods`, if given)."""

        def ready(samples: list[Sample]) -> bool:
            return ready_pods is None or value(samples, "inference_pool_ready_pods") == ready_pods

        await self.wait_for(
            "/metrics" if ready_pods is None else f"{ready_pods} ready pods", ready, token
        )
        await self.envoy.start()

    async def close(self, failed: bool) -> int | None:
        """Stop both (logs printed when the test failed); the EPP's exit code. Idempotent."""
        if self._closed:
            return self.epp.stop()
        self._closed = True
        if failed:
            print(self.epp.describe(tail=100))
            if self.envoy.log_file.exists():
                print(self.envoy.log_file.read_text(errors="replace")[-3000:])
        await self.client.close()
        await self.envoy.stop()
        return self.epp.stop()


def static_args(endpoints: Sequence[str], config: str, *extra: str) -> list[str]:
    """Flags of a static-endpoints EPP with health checking and open `/metrics`."""
    return [
        "--static-endpoints=" + ",".join(endpoints), "--metrics-endpoint-auth=false",
        "--health-checking=true", "--config-text", config, *extra,
    ]  # fmt: skip
