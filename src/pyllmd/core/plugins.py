"""Researchers' own plugins, found through Python entry points (`importlib.metadata`).

Three groups, each keyed by the name a config or flag uses:

- `pyllmd.epp.plugins`: an EPP plugin type string -> its factory `(name, parameters, handle)`;
- `pyllmd.autoscaler.analyzers`: an `analyzerName` -> `(V2State | None) -> Analyzer`;
- `pyllmd.sim.latency`: a `--latency-calculator` name -> `(LatencyParams) -> calculator`.

Entry points are listed once per process (cached) and imported only when a config names
one, so a broken package fails only the commands that use it, with one line naming the
entry point. An in-tree name always wins over a plugin's: the plugin is skipped with a
warning naming its package.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points

from pyllmd.core.errors import ConfigError

log = logging.getLogger(__name__)

EPP_PLUGINS = "pyllmd.epp.plugins"
ANALYZERS = "pyllmd.autoscaler.analyzers"
LATENCY = "pyllmd.sim.latency"


class PluginLoadError(ConfigError, ValueError):
    """An installed entry point could not be imported; the message names it (one line)."""


def _package(ep: EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return "an unknown package"
    return f"{dist.metadata['Name'] or dist.name} {dist.version}"


def describe(ep: EntryPoint) -> str:
    """`entry point 'name = module:attr' (group G, package P V)`, for messages."""
    return f"entry point '{ep.name} = {ep.value}' (group {ep.group}, package {_package(ep)})"


@functools.cache
def discover(group: str, builtin: frozenset[str] = frozenset()) -> Mapping[str, EntryPoint]:
    """The installed entry points of `group` by name, minus the in-tree `builtin` names
    (each clash logged once as a warning naming the package); the first one of a name wins."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        if ep.name in builtin:
            log.warning(
                "%s ignored: %r is an in-tree name of %s, which wins", describe(ep), ep.name, group
            )
            continue
        if ep.name in found:
            log.warning(
                "%s ignored: %s already provides %r",
                describe(ep),
                describe(found[ep.name]),
                ep.name,
            )
            continue
        found[ep.name] = ep
    return found


def names(group: str, builtin: Iterable[str] = ()) -> list[str]:
    """The plugin names of `group` that are not in-tree, sorted."""
    return sorted(discover(group, frozenset(builtin)))


def load(group: str, name: str, builtin: Iterable[str] = ()) -> object | None:
    """The object the entry point `name` of `group` refers to; None when there is none.

    Raises `PluginLoadError` (one line naming the entry point and the cause) when its
    module cannot be imported or lacks the attribute."""
    ep = discover(group, frozenset(builtin)).get(name)
    if ep is None:
        return None
    try:
        loaded: object = ep.load()
    except Exception as err:  # any import-time failure of a third-party package
        cause = " ".join(str(err).split()) or "no message"
        raise PluginLoadError(
            f"{describe(ep)} failed to load: {type(err).__name__}: {cause}"
        ) from None
    return loaded


def load_callable(group: str, name: str, builtin: Iterable[str] = ()) -> object | None:
    """Like `load`, and the object must be callable (a factory or a class)."""
    obj = load(group, name, builtin)
    if obj is not None and not callable(obj):
        ep = discover(group, frozenset(builtin))[name]
        raise PluginLoadError(
            f"{describe(ep)} is not callable ({type(obj).__name__}); "
            "it must name a factory or a class"
        )
    return obj
