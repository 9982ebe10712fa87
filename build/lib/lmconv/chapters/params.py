"""One validator for the chapters' parameters (papermill injects them; readers pass them to ``make chapter``).

Every notebook's first code cell after ``parameters`` is ``P = params.validate(profile=profile, ...)``: a wrong
type or an out-of-range value stops the chapter at once with the parameter's name, what was given and what is
allowed, before anything is computed or written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ..errors import LmconvError, no_repeats
from ..training import profiles


def _fail(name: str, value: Any, want: str) -> LmconvError:
    return LmconvError(
        f"parameter {name}={value!r} ({type(value).__name__}) is not valid: expected {want}",
        f"pass it as e.g. make chapter NAME=... ARGS='-p {name} <value>' with {want}",
    )


def _int(lo: int | None = None, hi: int | None = None, optional: bool = False) -> Callable:
    def check(name: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(name, v, f"an integer{_range(lo, hi)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _fail(name, v, f"an integer{_range(lo, hi)}")
        return v

    return check


def _float(lo: float | None = None, hi: float | None = None, optional: bool = False) -> Callable:
    def check(name: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _fail(name, v, f"a number{_range(lo, hi)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _fail(name, v, f"a number{_range(lo, hi)}")
        return float(v)

    return check


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" ≥ {lo}"
    return f" ≤ {hi}" if hi is not None else ""


def _choice(options: tuple) -> Callable:
    def check(name: str, v: Any) -> Any:
        if v not in options:
            raise _fail(name, v, f"one of {list(options)}")
        return v

    return check


def _list(item: Callable, optional: bool = True) -> Callable:
    def check(name: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, str | int) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, list | tuple) or not v:
            raise _fail(name, v, "a non-empty list (or null for all)")
        out = [item(f"{name}[]", x) for x in v]
        # a value listed twice would be counted twice (table rows, seed pairs, "n seeds")
        once = json.dumps(list(dict.fromkeys(out)))
        no_repeats(f"parameter {name}:", out, f"list each value once: -p {name} '{once}'")
        return out

    return check


def _str(name: str, v: Any) -> Any:
    if not isinstance(v, str) or not v:
        raise _fail(name, v, "a non-empty string")
    return v


def _profile(name: str, v: Any) -> Any:
    from pathlib import Path

    if isinstance(v, str) and (v in profiles.available() or (v.endswith((".yaml", ".yml")) and Path(v).exists())):
        return v
    raise _fail(name, v, f"a profile name, one of {profiles.available()}, or the path of a profile YAML file")


def _bool(name: str, v: Any) -> Any:
    if not isinstance(v, bool):
        raise _fail(name, v, "true or false")
    return v


# Every parameter any chapter takes, with its check. Chapters add theirs here, so they are checked alike.
CHECKS: dict[str, Callable] = {
    "profile": _profile,
    "arm": lambda n, v: v if v is None else _str(n, v),
    "sizes": _list(_str),
    "seeds": _list(_int(0)),
    "steps": _list(_int(0)),
    "probe_tokens": _int(64, 10_000_000, optional=True),
    "probe_context": _int(8, 100_000, optional=True),
    "probe_stride": _int(1, 100_000, optional=True),
    "rel_tol": _float(0.0, 1.0),
    "cka_threshold": _float(0.0, 1.0),
    "cka_estimator": _choice(("biased", "debiased")),
    "cka_variant": _choice(("last", "all")),
    "attention_activation": _choice(("attn_ov", "attn_ov_faithful", "attn_out")),
    "v_slice": _choice(("split", "faithful")),
    "kl_direction": _choice(("ordered", "symmetric")),
    "band": _choice(("pairs", "tokens")),
    "pos_source": _choice(("spacy", "gold")),
    "tag_position": _choice(("current", "context")),
    "sosd_tau": _float(0.0, None, optional=True),
    "sosd_window": _int(1, 101),
    "interactive": _bool,
}


def register(name: str, check: Callable) -> None:
    CHECKS[name] = check


def validate(**values: Any) -> SimpleNamespace:
    """Check every given parameter; return them as attributes (lists normalised)."""
    out = {}
    for name, v in values.items():
        if name not in CHECKS:
            raise LmconvError(f"parameter {name!r} has no check", "register it in lmconv.chapters.params.CHECKS")
        out[name] = CHECKS[name](name, v)
    return SimpleNamespace(**out)


def from_namespace(namespace: dict[str, Any]) -> SimpleNamespace:
    """:func:`validate` every registered parameter found in ``namespace``: a chapter calls it with ``globals()``
    right after its parameters cell (and papermill's injected one), so each parameter is named once, there."""
    load_registrations()
    return validate(**{name: v for name, v in namespace.items() if name in CHECKS})


def load_registrations() -> None:
    """Import every chapter module (``lmconv.lenses.*``), which registers the parameters it adds."""
    import importlib
    import pkgutil

    try:
        import lmconv.lenses as lenses
    except ImportError:
        return
    for mod in pkgutil.iter_modules(lenses.__path__):
        importlib.import_module(f"lmconv.lenses.{mod.name}")


def validate_injected(values: dict[str, Any]) -> None:
    """Check parameters before a chapter starts, so a bad value writes nothing (as the notebook's own check)."""
    load_registrations()
    validate(**values)


int_param, float_param, choice_param, list_param = _int, _float, _choice, _list
