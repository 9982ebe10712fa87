"""Every ``lmconv.…`` name the prose gives (README, DESIGN, the book's pages, the chapters) resolves to a module or
an attribute of one, so a moved module or a renamed function cannot leave a stale pointer behind."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "DESIGN.md", *sorted((ROOT / "book").glob("*.md"))]
DOCS += sorted((ROOT / "notebooks").glob("*.md"))
NAME = re.compile(r"(?<![\w/.-])lmconv(?:\.[A-Za-z_]\w*)+")
FILES = {"pdf", "css", "tex", "cff", "yml", "md", "json"}  # lmconv.pdf and the like are file names


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_named_lmconv_object_exists(doc):
    names = {m.group(0).rstrip(".") for m in NAME.finditer(doc.read_text())}
    stale = sorted(n for n in names if n.rsplit(".", 1)[-1] not in FILES and not resolves(n))
    assert not stale, f"{doc.name} names what does not exist: {stale}"
