"""Student notebooks: every chapter's MyST source with the solutions of its exercises taken out.

A solution is the block from a ``{solution-start}`` fence to its ``{solution-end}`` fence (sphinx-exercise's gated
directives): its prose, the ``literalinclude`` of its function and the cell that runs it all go; every exercise,
its stub and the rest of the page stay. ``lmconv student --out DIR`` (``make student``) writes each as its MyST
source and as an ``.ipynb`` (what Jupyter and Colab open).
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import paths
from ..io import write_text

# a solution block with the blank lines before it (the page's other blank lines, in stubs too, are kept)
SOLUTION = re.compile(r"\n+^```\{solution-start\}.*?^```\{solution-end\}\n```$", re.S | re.M)


def strip_solutions(text: str) -> str:
    """``text`` (a chapter's MyST source) without its solution blocks."""
    return SOLUTION.sub("", text)


def write(out: Path, notebooks: Path | None = None) -> list[Path]:
    """Write every ``notebooks/*.md`` (or those in ``notebooks``) to ``out`` without solutions, as MyST and as
    ``.ipynb``; the notebooks written."""
    import jupytext

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted(Path(notebooks or paths.NOTEBOOKS).glob("*.md")):
        text = strip_solutions(src.read_text())
        write_text(out / src.name, text)
        nb = out / f"{src.stem}.ipynb"
        write_text(nb, jupytext.writes(jupytext.reads(text, fmt="md:myst"), fmt="ipynb"))
        written.append(nb)
    return written
