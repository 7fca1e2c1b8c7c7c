"""HTTPS on the simulator's port (spec §10.1, check 59): generated and given certificates."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pyllmd.core.tls import write_self_signed
from tests.e2e.harness import READY_TIMEOUT, SimProcess, free_port, http_get

pytestmark = pytest.mark.e2e


def start_https(args: list[str]) -> tuple[SimProcess, str]:
    """A simulator that is healthy over https (the harness probes http only)."""
    sim = SimProcess(["--model", "m", "--mode", "echo", *args])
    url = f"https://127.0.0.1:{sim.port}"
    insecure = ssl._create_unverified_context()
    sim.wait_until(
        lambda: http_get(url + "/health", context=insecure)[0] == 200,
        READY_TIMEOUT + 10,  # generating an RSA 4096 key takes a moment
        "healthy over https",
    )
    return sim, url


def assert_plain_http_fails(port: int) -> None:
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)


def test_sim_acc_59_self_signed_certs() -> None:
    sim, url = start_https(["--self-signed-certs"])
    with sim:
        client = openai.OpenAI(
            base_url=url + "/v1",
            api_key="x",
            max_retries=0,
            http_client=httpx2.Client(verify=False),  # no SANs: nothing to verify a name against
        )
        done = client.completions.create(model="m", prompt="Hello, world!")
        assert done.choices[0].text == "Hello, world!"
        cert = x509.load_pem_x509_certificate(
            ssl.get_server_certificate(("127.0.0.1", sim.port)).encode()
        )
        org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        assert [a.value for a in org] == ["llm-d Inference Simulator"]
        assert_plain_http_fails(sim.port)
        assert "sha256=" in sim.output  # the fingerprint is logged for pinning


def test_given_certificate_is_verified_by_the_client(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path)  # its own CA, SANs 127.0.0.1 and localhost
    sim, url = start_https(["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)])
    with sim:
        trust = ssl.create_default_context(cafile=str(cert))
        client = openai.OpenAI(
            base_url=url + "/v1",
            api_key="x",
            max_retries=0,
            http_client=httpx2.Client(verify=trust),
        )
        assert [m.id for m in client.models.list().data] == ["m"]
        old = ssl.create_default_context(cafile=str(cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2 is still accepted
        assert http_get(url + "/health", context=old)[0] == 200
        assert_plain_http_fails(sim.port)


def test_unusable_certificate_files_exit_1_with_one_line(
    tmp_path: Path, run_sim: Callable[..., Any]
) -> None:
    cert, _ = write_self_signed(tmp_path)
    out = run_sim(
        "--model", "m", "--port", str(free_port()),
        "--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "missing.key"),
    )  # fmt: skip
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert out.returncode == 1 and len(errors) == 1 and "missing.key" in errors[0]
