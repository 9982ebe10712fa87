"""The schema machinery profiles are checked with before anything runs.

Field types carry their constraints (``Positive``, ``Fraction``, ``one_of(...)``) and are read by pydantic from the
profile dataclasses themselves, so a dataclass stays the one home of its keys and defaults. A :class:`Report`
validates a section, turns every pydantic error into a line that names the key path, what was wrong and the fix
(the closest known key for a misspelt one), and raises them together as one :class:`~lmconv.errors.LmconvError`.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typing_extensions
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic_core import PydanticCustomError

from ..errors import LmconvError

EXAMPLE = "lmconv/training/profiles/default.yaml"

#: Decorator for a profile section: a key it does not define is an error, not ignored.
closed = with_config(ConfigDict(extra="forbid"))

Text = Annotated[str, Field(strict=True)]
Count = Annotated[int, Field(strict=True, ge=0)]
Positive = Annotated[int, Field(strict=True, ge=1)]
NonNegative = Annotated[float, Field(strict=True, ge=0)]
PositiveReal = Annotated[float, Field(strict=True, gt=0)]
Fraction = Annotated[float, Field(strict=True, ge=0, le=1)]
# strict: text is no number (PyYAML reads 1e-3 as text) and true is no integer; a whole number is a float


def one_of(kind: str, options: Iterable[str]) -> Any:
    """A text field whose value must be one of ``options`` (``kind`` names it in the error)."""
    allowed = tuple(options)

    def check(value: str) -> str:
        if value not in allowed:
            raise PydanticCustomError("one_of", "unknown {kind}", {"kind": kind, "options": allowed})
        return value

    return Annotated[str, Field(strict=True), AfterValidator(check)]


@dataclass(frozen=True)
class Problem:
    """One key that is wrong: its path (``arms.wsd.lr``), what was wrong, and how to fix it."""

    path: str
    what: str
    fix: str


@dataclass
class Report:
    """The problems found in one profile (``source`` names its file); raised together by :meth:`raise_if_any`."""

    source: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: tuple, what: str, fix: str) -> None:
        problem = Problem(key_path(path), what, fix)
        if problem not in self.problems:  # one key of `train` is checked once for every arm that inherits it
            self.problems.append(problem)

    def adopt(self, path: tuple, check: Callable[..., object], *args: object) -> None:
        """Run ``check(*args)``, a rule kept in its own module that raises LmconvError; record that at ``path``."""
        try:
            check(*args)
        except LmconvError as e:
            self.add(path, e.problem, e.fix)

    def validate(self, tp: Any, data: Any, path: tuple = (), implied: Iterable[str] = ()) -> Any:
        """``data`` validated as ``tp`` (a profile dataclass), or None with its problems added under ``path``.

        ``implied`` names keys the loader fills in itself (never suggested to the writer of the YAML)."""
        try:
            return _adapter(tp).validate_python(data)
        except ValidationError as e:
            for err in e.errors():
                what, fix = describe(err, tp, set(implied))
                self.add(path + tuple(err["loc"]), what, fix)
            return None

    def raise_if_any(self) -> None:
        if not self.problems:
            return
        if len(self.problems) == 1:
            p = self.problems[0]
            raise LmconvError(f"{self.source}: {p.path}: {p.what}", p.fix)
        lines = "\n".join(f"  {p.path}: {p.what}; fix: {p.fix}" for p in self.problems)
        raise LmconvError(
            f"{self.source} has {len(self.problems)} problems:\n{lines}",
            f"correct each key as its line says; the shipped profiles (e.g. {EXAMPLE}) are worked examples",
        )


@functools.cache
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp)


def key_path(parts: Iterable) -> str:
    """``("arms", "wsd", "lr")`` → ``arms.wsd.lr``; list positions as ``seeds[2]``."""
    out = ""
    for p in parts:
        if p == "[key]":  # pydantic's mark for an error in a mapping's key, which the path already ends with
            continue
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if out else str(p)
    return out or "(top level)"


def describe(err: dict, root: Any, implied: set[str]) -> tuple[str, str]:
    """What was wrong and the fix, for one pydantic error found validating ``root``."""
    kind, value, ctx, loc = err["type"], err.get("input"), err.get("ctx") or {}, tuple(err["loc"])
    if kind in ("missing", "missing_argument") and isinstance(loc[-1], int):  # a list of fixed length
        return "is missing: the list is too short", f"give the list {loc[-1] + 1} entries"
    if kind in ("missing", "missing_argument"):
        return "is missing", f"add `{loc[-1]}:` (see {EXAMPLE} for a value)"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return "is not a known key", _unknown_key_fix(str(loc[-1]), sorted(set(keys_at(root, loc[:-1])) - implied))
    if kind == "one_of":
        return f"unknown {ctx['kind']} {value!r}", choice_fix(str(value), ctx["options"])
    bound = next(((op, ctx[k]) for k, op in BOUNDS.items() if k in ctx), None)
    if bound and kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"must be {bound[0]} {bound[1]}, got {shown(value)}", f"use a value {bound[0]} {bound[1]}"
    if kind in ("too_short", "too_long"):
        n, want = ctx.get("actual_length"), ctx.get("min_length", ctx.get("max_length"))
        many = "at least" if kind == "too_short" else "at most"
        return f"has {n} entries, needs {many} {want}", f"give it {many} {want}" + (
            " (it may not be empty)" if kind == "too_short" and not n else ""
        )
    if kind in TYPES:
        return f"must be {TYPES[kind]}, got {shown(value)}", _type_fix(kind, value)
    return f"{err['msg']} (got {shown(value)})", f"compare it with {EXAMPLE}"


BOUNDS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
TYPES = {
    "int_type": "a whole number",
    "float_type": "a number",
    "string_type": "text",
    "bool_type": "true or false",
    "dict_type": "a mapping (indented `key: value` lines or `{key: value}`)",
    "dataclass_type": "a mapping (indented `key: value` lines or `{key: value}`)",
    "dataclass_args_type": "a mapping (indented `key: value` lines or `{key: value}`)",
    "list_type": "a list (`[a, b]`)",
    "tuple_type": "a list (`[a, b]`)",
}


def shown(value: Any) -> str:
    """A value as the writer of the YAML would recognise it."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return f"the text {value!r}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def yaml_number(x: float) -> str:
    """``x`` written so that YAML reads a number (PyYAML reads ``1e-3`` as text: it wants ``1.0e-3``)."""
    text = repr(x)
    return text.replace("e", ".0e") if "e" in text and "." not in text else text


def _type_fix(kind: str, value: Any) -> str:
    if isinstance(value, str) and kind in ("int_type", "float_type"):
        try:
            number = float(value)
        except ValueError:
            return f"write {TYPES[kind]} (without quotes)"
        if kind == "int_type" and number.is_integer():
            return f"write {int(number)} (without quotes)"
        return f"write {yaml_number(number)}: YAML reads {value} as text, a number needs a decimal point (1.0e-3)"
    if kind == "int_type" and isinstance(value, float) and value.is_integer():
        return f"write {int(value)}, without a decimal point"
    return f"write {TYPES[kind]}, as in {EXAMPLE}"


def _unknown_key_fix(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    listed = ", ".join(known)
    return f"did you mean `{close[0]}`? Known keys here: {listed}" if close else f"remove it; known keys: {listed}"


def choice_fix(value: str, options: Iterable[str]) -> str:
    """The fix for a value that is none of ``options``: the closest one, and the list."""
    options = list(options)
    close = difflib.get_close_matches(value, options, n=1)
    listed = ", ".join(options)
    return f"did you mean {close[0]!r}? Pick one of {listed}" if close else f"pick one of {listed}"


def keys_at(root: Any, loc: tuple) -> list[str]:
    """The keys a section defines: the fields of the dataclass (or typed dict) found at ``loc`` inside ``root``."""
    tp = root
    for part in loc:
        tp = _bare(tp)
        tp = typing.get_args(tp)[-1] if typing.get_origin(tp) is dict else _hints(tp).get(part)
    return list(_hints(_bare(tp)))


def _hints(tp: Any) -> dict:
    try:
        return typing_extensions.get_type_hints(tp)
    except TypeError:  # not a class with fields (a plain mapping, a number)
        return {}


def _bare(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and ``| None``."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp
