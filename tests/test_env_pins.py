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


def test_the_package_accepts_a_preinstalled_torch_while_the_lock_pins_it():
    """``pip install lmconv`` (Colab, Binder) keeps the torch it finds; ``make setup`` installs the lock's exact one."""
    import tomllib

    from packaging.requirements import Requirement

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = next(Requirement(d) for d in meta["dependencies"] if Requirement(d).name == "torch")
    assert all(torch.specifier.contains(v) for v in ("2.13.0", "2.6.0", "2.9.1")) and not torch.specifier.contains(
        "3.0"
    )
    assert "torch==2.13.0" in lock_pins()


def test_every_import_of_the_package_is_declared():
    """Each third-party module the package imports belongs to a distribution named in its dependencies or extras
    (the notebooks extra for what a chapter needs)."""
    import ast
    import sys
    import tomllib

    from packaging.requirements import Requirement

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(d).name.lower().replace("_", "-") for d in meta["dependencies"]}
    declared |= {Requirement(d).name.lower() for extra in meta["optional-dependencies"].values() for d in extra}
    dist = {
        "yaml": "pyyaml",
        "IPython": "ipython",
        "myst_nb": "myst-nb",
        "pydantic_core": "pydantic",
        "docutils": "jupyter-book",
        "dask": "dask",
        "huggingface_hub": "huggingface-hub",
    }  # import → distribution
    used = set()
    for f in (ROOT / "src" / "lmconv").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                used |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                used.add(node.module.split(".")[0])
    third = {m for m in used if m not in sys.stdlib_module_names and m != "lmconv"}
    missing = {m for m in third if dist.get(m, m).lower().replace("_", "-") not in declared}
    assert not missing, missing


def test_allocator_preload_is_decided_when_the_command_runs(tmp_path):
    """A library installed after make read the Makefile (as `setup` does on a fresh machine) is preloaded by
    the very next command of the same `make` call."""
    import ctypes.util
    import os
    import shutil
    import subprocess

    name = ctypes.util.find_library("m")
    real = next(
        (
            p
            for p in (f"/lib/x86_64-linux-gnu/{name}", f"/usr/lib/x86_64-linux-gnu/{name}")
            if name and os.path.exists(p)
        ),
        None,
    )
    if real is None or shutil.which("make") is None:
        import pytest

        pytest.skip("needs make and a shared library to stand in for tcmalloc")
    lib = tmp_path / "libtcmalloc_minimal.so.4"
    extra = tmp_path / "install.mk"
    extra.write_text(f"install-late:\n\tcp {real} {lib}\n")
    env = {**os.environ, "LMCONV_TCMALLOC_CANDIDATES": str(lib)}
    r = subprocess.run(
        ["make", "-s", "-f", "Makefile", "-f", str(extra), "install-late", "preload"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == f"LD_PRELOAD={lib}"
