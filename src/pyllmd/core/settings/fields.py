"""Declaring a setting: one field of a command's settings model, with where its value
comes from and how it is documented.

A command's settings model is a frozen pydantic model or pydantic dataclass whose
fields are declared with `setting(...)`:

    port: int = setting(8000, "gateway port; 0: any free port", flag="port")

The field carries, once, its type and default (the Python declaration) and a
`Setting` (this module) with its flag name, value syntax, environment variable(s),
config-file key, help text, rule, deprecation and docs grouping. `table.py` reads
the model back into rows from which the pflag table, `--help`, the environment and
file lookups and the generated flag page are made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final, cast

from pydantic import Field
from pydantic.fields import FieldInfo

from pyllmd.core.flags import FlagKind, FlagSpec

__all__ = ["UNSET", "Setting", "setting"]


class _Unset:
    """Marks a `Setting.flag_default` that is the field's own default."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting of a command, as its model field declares it.

    `field`, `default` and (when not declared) `kind` are filled in from the model
    when its table is read (`settings_of`). Empty strings mean "none": a setting
    without `flag` is not on the command line, one without `key` is not read from the
    config file. A `derived` field has no source of its own: the loader computes it
    from other settings (it still appears in the table, for completeness checks).
    """

    help: str = ""
    flag: str = ""  # pflag name, without dashes
    kind: FlagKind | None = None  # value syntax; None: from the field's annotation
    shorthand: str = ""
    multi_arg: bool = False  # takes every argument up to the next `--…` (the simulator's lists)
    flag_default_override: object = UNSET  # what the flag shows and yields, when not `default`
    env: tuple[str, ...] = ()  # environment variables, in the order they are looked up
    key: str = ""  # config-file key
    deprecated: str = ""  # the warning logged when the flag is given
    group: str = ""  # docs grouping (e.g. "zap", "klog"); "" is the main table
    rule: str = ""  # the validation rule, as the docs state it
    type_text: str = ""  # the docs' type column, when not the kind
    doc_default: str = ""  # the docs' default column, when not the default's text
    derived: bool = False
    field: str = ""
    default: object = None

    @property
    def flag_default(self) -> object:
        """The flag's default: the field's, unless the declaration says otherwise."""
        if self.flag_default_override is UNSET:
            return self.default
        return self.flag_default_override

    @property
    def value_kind(self) -> FlagKind:
        """The resolved value syntax (set for every row of a table)."""
        assert self.kind is not None, f"{self.field}: no kind"
        return self.kind

    def flag_spec(self) -> FlagSpec:
        """The pflag table entry of this setting's flag."""
        return FlagSpec(
            self.flag,
            self.value_kind,
            self.flag_default,
            self.help,
            shorthand=self.shorthand,
            multi_arg=self.multi_arg,
        )

    def completed(self, field: str, default: object, kind: FlagKind | None) -> Setting:
        """This declaration with the model's field name, default and value syntax."""
        return replace(self, field=field, default=default, kind=self.kind or kind)


def setting(
    default: object,
    help: str = "",
    *,
    flag: str = "",
    kind: FlagKind | None = None,
    shorthand: str = "",
    multi_arg: bool = False,
    flag_default: object = UNSET,
    env: str | tuple[str, ...] = (),
    key: str = "",
    deprecated: str = "",
    group: str = "",
    rule: str = "",
    type_text: str = "",
    doc_default: str = "",
    derived: bool = False,
    alias: str | None = None,
) -> Any:
    """A settings-model field: its default plus its `Setting` (see that class).

    `alias` is the pydantic alias (the simulator's models take upstream's kebab-case
    names). Returns the pydantic field, typed Any so that it can stand as the default
    of any annotation.
    """
    info = cast(FieldInfo, Field(default, alias=alias) if alias is not None else Field(default))
    envs = (env,) if isinstance(env, str) else env
    meta = Setting(
        help=help,
        flag=flag,
        kind=kind,
        shorthand=shorthand,
        multi_arg=multi_arg,
        flag_default_override=flag_default,
        env=envs,
        key=key,
        deprecated=deprecated,
        group=group,
        rule=rule,
        type_text=type_text,
        doc_default=doc_default,
        derived=derived,
    )
    info.metadata.append(meta)
    return info
