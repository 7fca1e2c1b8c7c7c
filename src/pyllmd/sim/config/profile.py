"""The batch latency profile as a file: YAML (what `pyllmd calibrate` writes) or JSON (the
shipped default); the shell around the pure `sim.batch.steptime.Profile`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import yaml

from pyllmd.sim.batch.steptime import Profile

__all__ = ["load_profile", "profile_yaml"]


def _parse(text: str) -> object:
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as e:
        raise ValueError(" ".join(str(e).split())) from None


def load_profile(path: str | Path) -> Profile:
    """The profile in `path`, YAML or JSON; ConfigError naming --latency-profile otherwise."""
    return Profile.load(path, parse=_parse)


def profile_yaml(profile: Profile) -> str:
    """`profile` as YAML, one coefficient a line, in the model's order."""
    return yaml.safe_dump(asdict(profile), sort_keys=False)
