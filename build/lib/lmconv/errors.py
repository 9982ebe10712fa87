"""One error type for bad input: it names what was wrong and how to fix it."""

from __future__ import annotations


class LmconvError(Exception):
    """A problem the user can fix. ``str()`` gives the problem; ``fix`` says what to do."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}" if self.fix else self.problem


def choose(kind: str, value: object, allowed: list | tuple | set | dict, hint: str = "") -> None:
    """Raise a clear error when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        options = ", ".join(repr(a) for a in sorted(allowed, key=str))
        raise LmconvError(f"unknown {kind} {value!r}; this one has: {options}", hint or f"pick one of {options}")


def no_repeats(kind: str, values: list | tuple, hint: str = "") -> None:
    """Raise a clear error when a value is listed more than once (each would be counted, or run, twice)."""
    seen: list = []
    repeated = [v for v in values if v in seen or seen.append(v)]
    if repeated:
        once = list(dict.fromkeys(values))
        raise LmconvError(
            f"{kind} {', '.join(repr(v) for v in dict.fromkeys(repeated))} listed more than once in {list(values)}",
            hint or f"list each {kind} once, e.g. {once}",
        )
