"""`--endpoints-file` (pyllmd extension): the pool is a file of targets, followed as it changes.

Upstream discovers model servers only through the Kubernetes API; `--static-endpoints`
fixes them at start-up. Where servers come and go without Kubernetes (the local
stack scaling simulators from zero, a VM fleet managed by a script), the EPP reads
a Prometheus file_sd file instead, so the very file a Prometheus scrape job uses
can drive the pool:

    [{"targets": ["10.0.0.1:8000", "10.0.0.2:8000"], "labels": {"llm-d.ai/role": "decode"}}]

Each target becomes one ready endpoint named like a `--static-endpoints` entry,
carrying its group's labels (Prometheus' own `__*` labels are skipped). The file
is polled on the clock (its stat signature, as `core.tls.CertFiles` does and for
the same reasons: no extra dependency, and an atomic rename or a ConfigMap's
symlink swap shows up as a new inode). A change is applied to the datastore in
place, so the scraper starts and stops per-endpoint tasks; an unreadable or
invalid file at start-up stops start-up with one line, later it is logged and the
previous endpoints are kept until a valid version appears.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pyllmd.core.clock import Clock
from pyllmd.core.errors import ConfigError
from pyllmd.core.gosyntax import printable
from pyllmd.epp.datastore import Datastore, endpoints_from_static
from pyllmd.epp.options.model import StaticEndpoint, _label_error

__all__ = ["ENDPOINTS_FILE_POLL_INTERVAL", "EndpointsFile", "parse_endpoints_file"]

log = logging.getLogger(__name__)

ENDPOINTS_FILE_POLL_INTERVAL = 0.25  # seconds; as `--enable-cert-reload`
_SUFFIXES = (".json", ".yml", ".yaml")  # what Prometheus file_sd accepts

_Signature = tuple[int, int, int]


def _target(text: object, where: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) → (host without brackets, port)."""
    bad = ConfigError(f"{where}: {json.dumps(text)} is not host:port")
    if not isinstance(text, str):
        raise bad
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise bad
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise bad
    return host, int(port)


def _labels(raw: object, where: str) -> dict[str, str]:
    """A group's labels as Kubernetes pod labels; Prometheus' `__*` labels are dropped."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: labels must be a map of strings")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(f"{where}: labels must be a map of strings")
        if key.startswith("__"):
            continue
        if (error := _label_error(key, value)) is not None:
            raise ConfigError(f"{where}: {error}")
        out[key] = value
    return out


def parse_endpoints_file(text: str, name: str) -> tuple[StaticEndpoint, ...]:
    """The targets of a file_sd document (`name` decides JSON or YAML); raises ConfigError.

    An empty list is valid (a pool scaled to zero). A target listed twice is an error.
    """
    try:
        doc: Any = yaml.safe_load(text) if not name.endswith(".json") else json.loads(text)
    except (ValueError, yaml.YAMLError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--endpoints-file {printable(name)}: {reason}") from None
    if doc is None and not name.endswith(".json"):
        doc = []  # an empty YAML file
    if not isinstance(doc, list):
        raise ConfigError(f"--endpoints-file {printable(name)}: want a list of target groups")
    out: list[StaticEndpoint] = []
    seen: set[tuple[str, int]] = set()
    for i, group in enumerate(doc):
        where = f"--endpoints-file {printable(name)}: group {i}"
        if not isinstance(group, Mapping):
            raise ConfigError(f"{where}: want a map with targets and labels")
        targets = group.get("targets") or []
        if not isinstance(targets, list):
            raise ConfigError(f"{where}: targets must be a list")
        labels = _labels(group.get("labels"), where)
        for target in targets:
            host, port = _target(target, where)
            if (host, port) in seen:
                raise ConfigError(f"{where}: {printable(str(target))} is listed twice")
            seen.add((host, port))
            out.append(StaticEndpoint(host, port, labels))
    return tuple(out)


class EndpointsFile:
    """Keeps `datastore` equal to the targets of `path` (the imperative shell of this mode)."""

    def __init__(
        self, path: Path, datastore: Datastore, namespace: str, metrics_port_override: int = 0
    ) -> None:
        if not path.name.endswith(_SUFFIXES):
            shown = printable(str(path))
            raise ConfigError(
                f"--endpoints-file {shown}: the name must end in .json, .yml or .yaml"
            )
        self.path = path
        self.datastore = datastore
        self.namespace = namespace
        self.metrics_port_override = metrics_port_override
        self.entries: tuple[StaticEndpoint, ...] = ()
        self._seen: _Signature | None = None
        self._last_error = ""

    def _signature(self) -> _Signature | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> tuple[StaticEndpoint, ...]:
        try:
            text = self.path.read_text()
        except (OSError, ValueError) as err:  # ValueError: undecodable, or a NUL in the path
            raise ConfigError(f"--endpoints-file {printable(str(self.path))}: {err}") from None
        return parse_endpoints_file(text, str(self.path))

    def _apply(self, entries: tuple[StaticEndpoint, ...]) -> None:
        self.entries = entries
        endpoints = endpoints_from_static(entries, self.namespace, self.metrics_port_override)
        self.datastore.set_static(endpoints)

    def load(self) -> None:
        """First read, at start-up: the datastore is synced after it; raises ConfigError."""
        self._seen = self._signature()
        self._apply(self._read())

    def poll(self) -> bool:
        """Re-read the file if it changed; True when the endpoint set changed."""
        signature = self._signature()
        if signature is None:
            self._warn(f"--endpoints-file {self.path}: not readable, keeping the last endpoints")
            return False
        if signature == self._seen:
            return False
        try:
            entries = self._read()
        except ConfigError as err:
            self._warn(f"{err}; keeping the last endpoints")
            return False  # retried at the next poll only if the file changes again
        finally:
            self._seen = signature
        self._last_error = ""
        if entries == self.entries:
            return False
        before = {(e.address, e.port) for e in self.entries}
        after = {(e.address, e.port) for e in entries}
        self._apply(entries)
        log.info(
            "endpoints file changed path=%s endpoints=%d added=%d removed=%d",
            self.path, len(entries), len(after - before), len(before - after),
        )  # fmt: skip
        return True

    def _warn(self, message: str) -> None:
        if message != self._last_error:  # once per distinct problem, not every poll
            log.warning("%s", message)
            self._last_error = message

    async def run(self, clock: Clock, interval: float = ENDPOINTS_FILE_POLL_INTERVAL) -> None:
        """Poll until cancelled."""
        while True:
            await clock.sleep(interval)
            try:
                self.poll()
            except Exception:  # a surprise must not end discovery
                log.exception("endpoints file poll failed path=%s", self.path)
