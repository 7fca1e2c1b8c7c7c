"""`pyllmd pd-sidecar` (composition root): TLS, the listeners per data-parallel rank, the run.

`proxy.py` holds what each listener does; this module opens them on `--port`
(and `--port+i` for the ranks), with `--secure-proxy` TLS, and runs them until a
signal through the shared command opening (`core/entry.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from pyllmd.core.entry import run_command
from pyllmd.core.errors import ConfigError
from pyllmd.core.gosyntax import printable
from pyllmd.core.listen import bind_error
from pyllmd.core.tls import self_signed_pem
from pyllmd.sidecar.config import SidecarOptions, load_options
from pyllmd.sidecar.protocol import hostport
from pyllmd.sidecar.proxy import Sidecar

log = logging.getLogger(__name__)

PROG = "pyllmd pd-sidecar"
CERT_ORGANISATION = "llm-d Routing Sidecar"


def _ssl_context(options: SidecarOptions) -> ssl.SSLContext | None:
    """TLS for the listeners (`--secure-proxy`): `--cert-path` files or a self-signed RSA cert."""
    if not options.secure_proxy:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if options.cert_path:
        base = Path(options.cert_path)
        for file in (base / "tls.crt", base / "tls.key"):
            if not file.is_file():
                shown = printable(str(file))
                raise ConfigError(f"--cert-path: open {shown}: no such file or directory")
        try:
            ctx.load_cert_chain(base / "tls.crt", base / "tls.key")
        except (OSError, ssl.SSLError) as err:  # unreadable, not PEM, key of another cert
            reason = " ".join(str(err).split())
            raise ConfigError(
                f"--cert-path: {printable(str(base))}: tls.crt and tls.key are not a PEM "
                f"certificate and its unencrypted key: {reason}"
            ) from None
        return ctx
    cert, key = self_signed_pem(key_kind="rsa", organisation=CERT_ORGANISATION, days=3650, ca=False)
    with tempfile.TemporaryDirectory(prefix="pd-sidecar-") as tmp:
        (Path(tmp) / "tls.crt").write_bytes(cert)
        (Path(tmp) / "tls.key").write_bytes(key)
        ctx.load_cert_chain(Path(tmp) / "tls.crt", Path(tmp) / "tls.key")
    return ctx


@dataclass
class RunningSidecar:
    """The started listeners (main port first, then the data-parallel ranks)."""

    runners: list[web.AppRunner]
    sidecars: list[Sidecar]
    ports: list[int]

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        for sidecar in self.sidecars:
            pending = list(sidecar.background)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if sidecar.session is not None:
                await sidecar.session.close()


def build_sidecars(options: SidecarOptions, rng: random.Random | None = None) -> list[Sidecar]:
    """The main listener (which knows every rank) and one per extra data-parallel rank."""
    scheme = "https" if options.decoder_use_tls else "http"
    # upstream dials `localhost`; 127.0.0.1 avoids an IPv6-first lookup missing the server
    decoders = [
        f"{scheme}://127.0.0.1:{options.vllm_port + i}" for i in range(options.data_parallel_size)
    ]
    # keyed by `$POD_IP:<rank port>`, the rank address the EPP puts in the header
    ranks = {hostport(options.pod_ip, options.port + i): d for i, d in enumerate(decoders)}
    rng = rng or random.Random()
    main = Sidecar(options, decoders[0], ranks, rng)
    return [main, *(Sidecar(options, d, {}, rng) for d in decoders[1:])]


async def start_sidecar(options: SidecarOptions) -> RunningSidecar:
    """Open the listeners on `--port` (and `--port+i` for the ranks)."""
    host = options.bind_address
    for i in range(options.data_parallel_size):
        flag = "--port" if i == 0 else f"--port (data-parallel rank {i}: --port+{i})"
        if (error := bind_error(host, options.port + i, flag)) is not None:
            raise ConfigError(error)
    context = await asyncio.to_thread(_ssl_context, options)  # RSA 4096 takes a moment
    sidecars = build_sidecars(options)
    running = RunningSidecar([], sidecars, [])
    try:
        for i, sidecar in enumerate(sidecars):
            runner = web.AppRunner(sidecar.app(), access_log=None)
            await runner.setup()
            running.runners.append(runner)
            site = web.TCPSite(
                runner, options.bind_address or None, options.port + i, ssl_context=context
            )
            await site.start()
            running.ports.append(options.port + i)
    except BaseException:
        await running.close()
        raise
    log.info("pd-sidecar listening on %s, decoder %s", running.ports, sidecars[0].decoder)
    return running


async def serve(options: SidecarOptions, stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    running = await start_sidecar(options)
    try:
        await stop.wait()
    finally:
        await running.close()


Runner = Callable[[Callable[[asyncio.Event], Awaitable[None]], str], int]


def run_pd_sidecar(
    argv: Sequence[str], runner: Runner, env: Mapping[str, str] | None = None
) -> int:
    """Parse the flags and serve until a signal; the exit status."""
    return run_command(
        PROG,
        lambda: load_options(argv, os.environ if env is None else env),
        lambda options: runner(lambda stop: serve(options, stop), PROG),
        verbosity=lambda options: options.verbosity,
    )
