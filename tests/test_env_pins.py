"""The lock and environment.yml list the same pins; torch stays on the CPU wheel's exact version."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def lock_pins() -> set[str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def test_lock_is_exact():
    pins = lock_pins()
    assert all("==" in p for p in pins), [p for p in pins if "==" not in p]
    assert "torch==2.13.0" in pins
    assert "jupyter-book==1.0.4.post1" in pins


def test_environment_yml_matches_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert {p for p in pip if "==" in p} == lock_pins()
    assert "python=3.11" in env["dependencies"]


def test_pyproject_pins_torch():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in text
