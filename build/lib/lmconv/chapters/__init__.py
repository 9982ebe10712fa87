"""One module per chapter: ``notebooks/NN_name.md`` is a thin page over ``lmconv.chapters.name``.

A chapter module has ``load(P)``, which reads once what the chapter needs for its validated parameters ``P``,
and one function per section, which returns the values that section's prose and captions glue (figures,
tables, numbers, verdict sentences) under the names they use. The notebook's code is its parameters, ``load``
and one :func:`show` per section (each decorated with :func:`section`); everything it shows is computed,
tested and linted here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import analysis
from ..book.provenance import name_of, stamp

Glued = dict[str, Any]


def analysed(P: Any) -> analysis.Results:
    """The engine's tables for a page's suite, sizes and seeds, on its probe (the profile's, with the page's
    ``probe_tokens`` where it has that parameter); from the cache when the book has run them before."""
    probe = analysis.probe_settings(P.profile, getattr(P, "probe_tokens", None))
    return analysis.run(profile=P.profile, sizes=P.sizes, seeds=P.seeds, probe=probe, progress=False)


def ends(sizes: Sequence[str]) -> dict[str, str]:
    """The smallest and the largest size, under the suffixes their glued names use (``size_small`` …)."""
    return {"small": sizes[0], "large": sizes[-1]}


def section(fn: Callable[..., Glued]) -> Callable[..., Glued]:
    """Decorate a chapter's section: every chart and table it returns names the function that drew it (its
    figure builder, else this section), so the book's captions link to that code (:mod:`lmconv.book.provenance`)."""
    name = name_of(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> Glued:
        return {k: stamp(v, name) for k, v in fn(*args, **kwargs).items()}

    return wrapper


def show(*sections: Mapping[str, Any]) -> None:
    """Glue every value of each section under its name (display off: the page shows them where its prose
    and ``{glue:figure}`` blocks ask)."""
    from ..book import glue

    for section in sections:
        for name, value in section.items():
            glue(name, value)


def collect(module: object, data: object, names: list[str]) -> Glued:
    """Run the sections ``names`` of a chapter module on its data, as the page does, into one mapping; a name
    glued by two sections is an error (the page would show the later value under both)."""
    from ..errors import LmconvError

    out: Glued = {}
    for name in names:
        fn = getattr(module, name)
        values = fn(data) if inspect.signature(fn).parameters else fn()  # a section may need no data
        twice = set(values) & set(out)
        if twice:
            raise LmconvError(f"section {name} glues {sorted(twice)}, already glued by an earlier one", "rename one")
        out.update(values)
    return out
