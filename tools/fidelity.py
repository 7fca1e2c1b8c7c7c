"""Regenerates the results part of docs/developer-guide/fidelity.md (`make fidelity`).

`make fidelity` first runs `pyllmd calibrate --holdout both --results
tools/fidelity_results.json` on the shared calibration set, then this tool renders that
record into the page between its markers with `pyllmd.simulate.fidelity.render`. The record
is committed, so the page can be rendered (and checked, `--check`) without the slow fit.

Usage: ``python tools/fidelity.py [--results FILE] [--page FILE] [--check]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pyllmd.simulate.fidelity import render, replace_block

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tools" / "fidelity_results.json"
PAGE = ROOT / "docs" / "developer-guide" / "fidelity.md"


def rendered_page(results: Path = RESULTS, page: Path = PAGE) -> str:
    """The page as `make fidelity` writes it from `results`."""
    record = json.loads(results.read_text(encoding="utf-8"))
    return replace_block(page.read_text(encoding="utf-8"), render(record))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--page", type=Path, default=PAGE)
    ap.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = ap.parse_args(argv)
    text = rendered_page(args.results, args.page)
    if args.check:
        if text != args.page.read_text(encoding="utf-8"):
            print(f"{args.page}: stale; run make fidelity", file=sys.stderr)
            return 1
        return 0
    args.page.write_text(text, encoding="utf-8")
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
