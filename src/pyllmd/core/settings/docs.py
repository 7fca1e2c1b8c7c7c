"""Pieces of the generated flag pages (docs/user-guide/admin/*flags.md).

Each command lays its page out itself (the pages differ in columns and sections);
the rows come from its settings model, so a page cannot drift from the parser, and
each command's unit tests compare the committed page with the generated one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pyllmd.core.settings.fields import Setting

__all__ = ["flag_cell", "markdown_table"]


def flag_cell(row: Setting) -> str:
    """`--name`, or `-v`, `--v` for a flag with a shorthand."""
    if row.shorthand:
        return f"`-{row.shorthand}`, `--{row.flag}`"
    return f"`--{row.flag}`"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table's lines: the header, the rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines
