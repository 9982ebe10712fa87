"""Insert the "run this chapter yourself" cell after the parameters cell of chapter notebooks that lack it."""

import re
import sys
from pathlib import Path

CELL = Path(__file__).with_name("run_yourself_cell.md").read_text()
for path in map(Path, sys.argv[1:]):
    text = path.read_text()
    if "bootstrap.ensure_suite" in text:
        continue
    m = re.search(r"```\{code-cell\} ipython3\n:tags: \[parameters, remove-cell\]\n.*?```\n\n", text, re.S)
    if not m:
        sys.exit(f"{path}: no parameters cell")
    path.write_text(text[: m.end()] + CELL + text[m.end() :])
    print(f"{path}: added")
