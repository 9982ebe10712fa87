"""One module per chapter: ``notebooks/NN_name.md`` is a thin page over ``lmconv.chapters.name``.

A chapter module has ``load(P)``, which reads once what the chapter needs for its validated parameters ``P``,
and one function per section, which returns the values that section's prose and captions glue (figures,
tables, numbers, verdict sentences) under the names they use. The notebook's code is its parameters, ``load``
and one :func:`show` per section; everything it shows is computed, tested and linted here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Glued = dict[str, Any]


def show(*sections: Mapping[str, Any]) -> None:
    """Glue every value of each section under its name (display off: the page shows them where its prose
    and ``{glue:figure}`` blocks ask)."""
    from ..book import glue

    for section in sections:
        for name, value in section.items():
            glue(name, value)
