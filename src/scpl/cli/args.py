"""Flag parsing shared by the subcommands: comma-separated lists, and option dataclasses
filled from parsed flags."""

from __future__ import annotations

import argparse
from dataclasses import fields

from scpl.errors import ConfigError


def ints(text: str, flag: str, example: str = "1,2,4,8") -> tuple[int, ...]:
    """Comma-separated integers; a ConfigError naming ``flag`` otherwise."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r} must be comma-separated integers, e.g. {example}"
        ) from None


def names(text: str) -> tuple[str, ...]:
    """Comma-separated names, blanks dropped."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def options_from(cls: type, args: argparse.Namespace, **overrides):
    """The options dataclass ``cls`` from the parsed flags of its fields (flags left unset keep
    its defaults), then ``overrides`` (flags that need converting)."""
    known = {f.name for f in fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in known and v is not None}
    return cls(**{**given, **overrides})
