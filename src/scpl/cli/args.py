"""Flag parsing shared by the subcommands: comma-separated lists, and option dataclasses
filled from parsed flags."""

from __future__ import annotations

import argparse
import difflib
import sys
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


class Parser(argparse.ArgumentParser):
    """argparse with one ``scpl: error:`` line for a bad command line (no usage dump), and no
    abbreviated flags: an abbreviation such as ``--npro`` would silently become ``--nproc`` here
    and then reach torchrun (which re-parses the command of a ``--nproc`` run) as an ambiguous
    option of its own; a typo is refused with the flag it probably meant instead."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"scpl: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)

    def refuse_unknown(self, unknown: list[str], command: str | None) -> None:
        """One line for flags no parser took, suggesting the closest flag of ``command``."""
        parser = self._subcommand(command) or self
        known = [o for o in parser._option_string_actions if o.startswith("--")]
        hints = []
        for a in unknown:
            if a.startswith("--"):
                close = difflib.get_close_matches(a.split("=", 1)[0], known, n=1, cutoff=0.7)
                if close:
                    hints.append(f"did you mean {close[0]}?")
        hint = f"; {'; '.join(hints)}" if hints else ""
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")

    def _subcommand(self, command: str | None) -> argparse.ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                return action.choices[command]
        return None
