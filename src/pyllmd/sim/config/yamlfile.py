"""Reading the simulator's `--config` YAML file with upstream's (Go yaml.v3) typing.

PyYAML's composed node tree is converted by hand, per key, so that the rules
of the Go original hold: strings and durations use the scalar's source text
(`mode: on` is the string "on", `time-to-first-token: 100` is "100" = 100 ms),
null resets a key to its zero value, unknown keys are ignored, and errors give
the line number and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import yaml

from pyllmd.core.errors import ConfigError
from pyllmd.core.flags import is_deprecated_duration, parse_duration

YamlKind = Literal[
    "bool", "int", "float", "string", "duration", "strings", "json-strings", "mapping"
]

_PREFIX = "failed to unmarshal configuration: "
_NULL = "tag:yaml.org,2002:null"
_ZERO: dict[str, object] = {
    "bool": False,
    "int": 0,
    "float": 0.0,
    "string": "",
    "duration": 0.0,
    "strings": (),
    "json-strings": (),
    "mapping": None,
}


def _short_tag(node: yaml.Node) -> str:
    tag = str(node.tag)
    return "!!" + tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag


def _python(node: yaml.Node) -> object:
    """The node as PyYAML's safe constructor builds it."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _type_error(key: str, node: yaml.Node, kind: str) -> ConfigError:
    shown = f" `{node.value}`" if isinstance(node, yaml.ScalarNode) else ""
    line = node.start_mark.line + 1
    return ConfigError(
        f"{_PREFIX}line {line}: cannot unmarshal {_short_tag(node)}{shown} into {kind} "
        f"(key '{key}')"
    )


def _scalar(key: str, node: yaml.Node, kind: YamlKind, warnings: list[str]) -> object:
    if not isinstance(node, yaml.ScalarNode):
        raise _type_error(key, node, kind)
    if kind == "string":
        return str(node.value)
    if kind == "duration":
        text = str(node.value)
        try:
            seconds = parse_duration(text)
        except ValueError:
            line = node.start_mark.line + 1
            raise ConfigError(
                f"{_PREFIX}invalid duration format at line {line} (key '{key}')"
            ) from None
        if is_deprecated_duration(text):
            warnings.append(deprecation_warning(key, text, from_yaml=True))
        return seconds
    value = _python(node)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind in ("int", "float") and isinstance(value, int | float) and not isinstance(value, bool):
        if kind == "float":
            return float(value)
        if isinstance(value, int) or value.is_integer():
            return int(value)
    raise _type_error(key, node, kind)


def _convert(key: str, node: yaml.Node, kind: YamlKind, warnings: list[str]) -> object:
    if node.tag == _NULL:
        return _ZERO[kind]
    if kind in ("strings", "json-strings"):
        if not isinstance(node, yaml.SequenceNode):
            raise _type_error(key, node, "a list")
        items: list[object] = []
        for item in node.value:
            if isinstance(item, yaml.ScalarNode):
                items.append("" if item.tag == _NULL else str(item.value))
            elif kind == "json-strings" and isinstance(item, yaml.MappingNode):
                items.append(_python(item))  # extension: a mapping instead of a JSON string
            else:
                raise _type_error(key, item, "a string")
        return tuple(items)
    if kind == "mapping":
        if not isinstance(node, yaml.MappingNode):
            raise _type_error(key, node, "a mapping")
        return _python(node)
    return _scalar(key, node, kind, warnings)


def deprecation_warning(name: str, raw: str, from_yaml: bool = False) -> str:
    """Warning for a duration given as a bare integer of milliseconds."""
    where = f"config file key '{name}'" if from_yaml else f"--{name}"
    return (
        f"{where}: integer value {raw!r} is deprecated and read as milliseconds; "
        f"write a duration such as '{raw}ms'"
    )


def read_yaml_config(
    text: str, kinds: Mapping[str, YamlKind]
) -> tuple[dict[str, object], list[str]]:
    """Known keys of a YAML document (key -> typed value) and deprecation warnings."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{_PREFIX}yaml: {where}{problem}") from None
    if root is None:
        return {}, []
    if not isinstance(root, yaml.MappingNode):
        raise _type_error("<document>", root, "a mapping of flag names")
    values: dict[str, object] = {}
    warnings: list[str] = []
    for key_node, value_node in root.value:
        key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
        if key in values:
            line = key_node.start_mark.line + 1
            raise ConfigError(f'{_PREFIX}yaml: line {line}: mapping key "{key}" already defined')
        kind = kinds.get(key)
        if kind is not None:
            values[key] = _convert(key, value_node, kind, warnings)
    return values, warnings
