"""One home for the repository address and the release: every file that repeats them agrees, a stale one is found
and rewritten, and Binder and the publish workflow install that release on the CPU."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import yaml

import lmconv
from lmconv.book import identity, provenance

ROOT = Path(__file__).resolve().parents[1]


def test_every_file_agrees_with_the_one_home():
    assert identity.stale() == []
    assert provenance.REPOSITORY is lmconv.REPOSITORY
    assert identity.install_spec() == f"lmconv[notebooks] @ git+{lmconv.REPOSITORY}@v{lmconv.__version__}"


def test_pyproject_reads_the_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lmconv.__version__"}


def copy_of_the_checkout(tmp_path: Path) -> Path:
    for name in ("_config.yml", "CITATION.cff", "README.md"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    return tmp_path


def test_a_stale_address_or_version_is_found_and_rewritten(tmp_path):
    root = copy_of_the_checkout(tmp_path)
    page = root / "notebooks" / "02_kl_convergence.md"
    page.write_text(page.read_text().replace(identity.install_spec(), "lmconv @ git+https://example.org/old"))
    cff = root / "CITATION.cff"
    cff.write_text(cff.read_text().replace(f"\nversion: {lmconv.__version__}", "\nversion: 0.0.9"))
    pos = root / "notebooks" / "04_parts_of_speech.md"
    pos.write_text(pos.read_text().replace(identity.run_yourself_cell() + "\n", ""))
    found = identity.stale(root)
    assert any("02_kl_convergence.md" in p and "stale" in p for p in found)
    assert any("04_parts_of_speech.md" in p and "missing" in p for p in found)
    assert any("CITATION.cff" in p and "0.0.9" in p for p in found)
    changed = {p.name for p in identity.write(root)}
    assert changed == {"02_kl_convergence.md", "04_parts_of_speech.md", "CITATION.cff"}
    assert identity.stale(root) == []
    assert (root / "notebooks" / "04_parts_of_speech.md").read_text() == (
        ROOT / "notebooks" / "04_parts_of_speech.md"
    ).read_text()


def test_binder_installs_the_lock_on_the_cpu_then_the_package():
    env = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("python=3.11") for d in deps)
    assert not any(isinstance(d, dict) for d in env["dependencies"])  # no pip section: postBuild installs the lock
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu -r requirements.lock" in post
    assert 'pip install --no-cache-dir --no-deps ".[notebooks]"' in post
    assert (ROOT / "binder" / "postBuild").stat().st_mode & 0o111


def test_publish_checks_the_tag_and_ships_binder_with_the_notebooks():
    flow = (ROOT / ".github" / "workflows" / "publish.yml").read_text()
    steps = yaml.safe_load(flow)["jobs"]["book"]["steps"]
    tag = next(s for s in steps if "tag is the package's version" in s.get("name", ""))
    assert "GITHUB_REF_NAME" in tag["run"] and "__version__" in tag["run"]
    push = next(s for s in steps if s.get("name", "").startswith("Executed notebooks"))
    added = next(line for line in push["run"].splitlines() if "git add" in line).split()
    assert {"binder", "src", "pyproject.toml", "README.md", "requirements.lock"} <= set(added)
