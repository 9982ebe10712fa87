"""Write environment.yml (for conda users) from requirements.lock, so the two list the same pins."""

from pathlib import Path

root = Path(__file__).resolve().parents[1]
pins = [
    ln.strip() for ln in (root / "requirements.lock").read_text().splitlines() if ln.strip() and not ln.startswith("#")
]
lines = [
    "# Generated from requirements.lock by scripts/environment_yml.py (make lock); tests check they agree.",
    "name: lmconv",
    "channels:",
    "  - conda-forge",
    "dependencies:",
    "  - python=3.11",
    "  - pip",
    "  - nodejs>=18",
    "  - pip:",
    *[f"      - {p}" for p in pins],
    "      - -e .",
    "",
]
(root / "environment.yml").write_text("\n".join(lines))
