"""Rules: the catalogue (`catalogue`: every rule named, versioned and parameterised) and its
API (`views`: list, and edit as a new version)."""

from ecowatt_alarm.rules.catalogue import (
    DEFAULT_RULES,
    LEVEL_NAMES,
    RuleConfig,
    RuleSet,
    fmt_kw,
    fmt_time,
    local_day,
)

__all__ = [
    "DEFAULT_RULES",
    "LEVEL_NAMES",
    "RuleConfig",
    "RuleSet",
    "fmt_kw",
    "fmt_time",
    "local_day",
]
