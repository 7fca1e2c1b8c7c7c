"""The endpoint picker's flags and environment (spec §1): the model `EppOptions`.

`model.py` declares every setting once; `load.py` parses and validates in
upstream's order; `docs.py` renders docs/user-guide/admin/epp-flags.md. The
EndpointPickerConfig file is the sibling package `epp/config/`.
"""

from pyllmd.epp.options.model import (
    DEPRECATED_METRIC_FLAGS,
    ENV_FEATURE_GATES,
    POOL_GROUPS,
    POSITIVE_DURATIONS,
    PROG,
    SERVER_PORTS,
    EppOptions,
    HelpRequested,
    StaticEndpoint,
    epp_flag_specs,
    flags_markdown,
    help_text,
    load_options,
    parse_label_map,
    parse_static_endpoints,
)

__all__ = [
    "DEPRECATED_METRIC_FLAGS",
    "ENV_FEATURE_GATES",
    "POOL_GROUPS",
    "POSITIVE_DURATIONS",
    "PROG",
    "SERVER_PORTS",
    "EppOptions",
    "HelpRequested",
    "StaticEndpoint",
    "epp_flag_specs",
    "flags_markdown",
    "help_text",
    "load_options",
    "parse_label_map",
    "parse_static_endpoints",
]
