"""Running the chapters (papermill) and building the book (Jupyter Book 1.x).

The table of contents (``book/_toc.yml``) is the one list of chapters: every entry under ``chapters/`` is a
notebook ``notebooks/{name}.md`` (jupytext MyST) that papermill executes into ``book/chapters/{name}.ipynb``
with the profile and any other parameters injected. Jupyter Book then renders with execution off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .. import paths
from ..errors import LmconvError
from ..io import atomic_dir, read_json, write_json, write_text

CHAPTER_PREFIX = "chapters/"


def glue(name: str, value, display: bool = False) -> None:
    """``myst_nb.glue`` with numpy and pandas scalars turned into plain Python numbers first (their numpy 2
    repr, ``np.float64(…)``, cannot be formatted by ``{glue:text}`key:.2f```)."""
    import numpy as np
    from myst_nb import glue as _glue

    from .provenance import stamp

    if isinstance(value, np.generic):
        value = value.item()
    _glue(name, stamp(value), display=display)  # a builder's chart names its builder (lmconv.book.provenance)


_RANDOM_IDS = (
    (re.compile(r"altair-viz-[0-9a-f]{32}"), "altair-viz-"),  # Altair's per-render element id
    (re.compile(r"T_[0-9a-f]{5}"), "T_"),  # a pandas Styler's per-render table id
)


def glued_values(notebook: Path) -> dict[str, str]:
    """Every value an executed chapter glued, by name: its HTML (figures, tables) or plain text (numbers, words),
    with the ids that change from one execution to the next blanked, so two runs compare equal when their
    results do."""
    out: dict[str, str] = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            data = o.get("data", {})
            prefix = meta.get("mime_prefix", "")
            text = data.get(prefix + "text/html") or data.get(prefix + "text/plain") or ""
            text = "".join(text) if isinstance(text, list) else text
            for pattern, blank in _RANDOM_IDS:
                text = pattern.sub(blank, text)
            out[meta["name"]] = text
    return out


_GLUE_ROLE = re.compile(r"\{glue(?::text|:any|:md|:math|:)?\}`([A-Za-z_]\w*)(?::[^`]*)?`")
_GLUE_BLOCK = re.compile(r"^\s*(?:`{3,}|:{3,})\{glue(?::figure|:any|:md|:math)?\}[ \t]+([A-Za-z_]\w*)", re.M)


def glue_names(notebook: Path) -> set[str]:
    """The glued names a page's prose, captions and ``{glue:figure}`` blocks use."""
    import jupytext

    text = "\n".join(c.source for c in jupytext.read(notebook).cells if c.cell_type == "markdown")
    return set(_GLUE_ROLE.findall(text)) | set(_GLUE_BLOCK.findall(text))


def unused_glue(notebook: Path, glued: dict) -> set[str]:
    """The names in ``glued`` that the page does not use; a name the page uses that is not glued is an error."""
    missing = glue_names(notebook) - set(glued)
    if missing:
        raise LmconvError(f"{notebook.name} uses glued names no section returns: {sorted(missing)}", "glue them")
    return set(glued) - glue_names(notebook)


def page_parameters(notebook: Path, **overrides) -> dict:
    """A page's parameters cell executed (its defaults, as papermill sees them), updated with ``overrides``."""
    import jupytext

    cells = [c for c in jupytext.read(notebook).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise LmconvError(f"{notebook} has {len(cells)} cells tagged parameters", "tag exactly one code cell")
    ns: dict = {}
    exec(cells[0].source, ns)
    return {k: v for k, v in ns.items() if not k.startswith("__")} | overrides


def page_sections(notebook: Path) -> list[str]:
    """The chapter-module functions a page shows, in order: every ``ch.name(...)`` inside a ``show(...)`` call."""
    import ast

    import jupytext

    names = []
    for cell in jupytext.read(notebook).cells:
        if cell.cell_type != "code" or "show(" not in cell.source:
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "show":
                for arg in node.args:
                    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute):
                        names.append(arg.func.attr)
    return names


def toc_chapters(book_dir: Path | None = None) -> list[str]:
    """Notebook names in the order of the table of contents."""
    toc = yaml.safe_load(((book_dir or paths.BOOK) / "_toc.yml").read_text())
    names: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            f = node.get("file")
            if isinstance(f, str) and f.startswith(CHAPTER_PREFIX):
                names.append(f[len(CHAPTER_PREFIX) :])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    root = toc.get("root")
    if isinstance(root, str) and root.startswith(CHAPTER_PREFIX):  # an executed landing page runs first
        names.append(root[len(CHAPTER_PREFIX) :])
    walk(toc)
    return names


def notebook_source(name: str) -> Path:
    src = paths.NOTEBOOKS / f"{name}.md"
    if not src.exists():
        known = ", ".join(sorted(p.stem for p in paths.NOTEBOOKS.glob("*.md")))
        raise LmconvError(f"no chapter notebook named {name!r}", f"chapters: {known}")
    return src


def input_hash(name: str, parameters: dict) -> str:
    """What an executed chapter depends on: its source, its parameters, the ``lmconv`` code, the pinned
    environment and the manifests of the suites it reads. Equal hash → re-executing would change nothing."""
    from ..io import sha256_file, sha256_json
    from . import status

    code = {
        str(f.relative_to(paths.ROOT)): sha256_file(f)
        for f in sorted((paths.ROOT / "src" / "lmconv").rglob("*"))
        if f.suffix in (".py", ".yaml")
    }
    profile = parameters.get("profile", "default")
    suites = {p: status.suite_status(p).get("manifest_sha256") for p in [profile, *companion_profiles(profile)]}
    return sha256_json(
        {
            "notebook": sha256_file(notebook_source(name)),
            "parameters": parameters,
            "code": code,
            "lock": sha256_file(paths.ROOT / "requirements.lock"),
            "suites": suites,
        }
    )


def is_current(name: str, parameters: dict, book_dir: Path) -> bool:
    nb = book_dir / "chapters" / f"{name}.ipynb"
    if not nb.exists():
        return False
    try:
        meta = json.loads(nb.read_text())["metadata"]
    except (json.JSONDecodeError, KeyError):
        return False
    return meta.get("lmconv", {}).get("input_hash") == input_hash(name, parameters)


def check_chapter_parameters(name: str, notebook: Path, parameters: dict) -> None:
    """Raise when a parameter is not one of the chapter's own (its parameters cell): papermill would inject it
    and the chapter would never read it."""
    own = sorted(page_parameters(notebook))
    if unknown := [k for k in parameters if k not in own]:
        raise LmconvError(
            f"chapter {name} takes no parameter {', '.join(repr(k) for k in unknown)}",
            f"its parameters are {', '.join(own)} (set one with -p NAME VALUE)",
        )


def run_chapter(name: str, parameters: dict, book_dir: Path | None = None, quiet: bool = False) -> Path:
    """Execute one chapter with papermill; the executed notebook appears only when it ran to the end."""
    import jupytext
    import nbformat
    import papermill

    from ..chapters import params

    book_dir = book_dir or paths.BOOK
    src = notebook_source(name)
    check_chapter_parameters(name, src, parameters)
    params.validate_injected(parameters)
    out_dir = book_dir / "chapters"
    work = book_dir / "_build" / "papermill"
    work.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(src)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    nb.metadata["lmconv"] = {"source": f"notebooks/{src.name}", "input_hash": input_hash(name, parameters)}
    unexecuted = work / f"{name}.ipynb"
    nbformat.write(nb, unexecuted)
    tmp_out = work / f"{name}.executed.ipynb"
    final = out_dir / f"{name}.ipynb"
    ledger = work / f"{name}.analyses.json"  # the analyses the chapter runs (the release publishes their tables)
    ledger.unlink(missing_ok=True)
    t0 = time.time()
    if not quiet:
        print(f"[chapter] {name} {json.dumps(parameters)}", flush=True)
    previous = os.environ.get(paths.LEDGER_ENV)
    os.environ[paths.LEDGER_ENV] = str(ledger)
    try:
        papermill.execute_notebook(
            str(unexecuted),
            str(tmp_out),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(out_dir),
            progress_bar=False,
            log_output=False,
            report_mode=False,
        )
    except papermill.PapermillExecutionError as e:
        failed = out_dir / f"{name}.failed.ipynb"
        shutil.copy2(tmp_out, failed)
        raise LmconvError(
            f"chapter {name} failed in cell {e.exec_count}: {e.ename}: {(e.evalue or '').strip()}",
            f"see the executed notebook {failed}",
        ) from None
    finally:
        if previous is None:
            os.environ.pop(paths.LEDGER_ENV, None)
        else:
            os.environ[paths.LEDGER_ENV] = previous
    offline_outputs(tmp_out)
    if ledger.exists():
        os.replace(ledger, ledger_of(name, book_dir))
    else:
        ledger_of(name, book_dir).unlink(missing_ok=True)
    os.replace(tmp_out, final)
    if not quiet:
        print(f"[chapter] {name} done in {time.time() - t0:.0f} s", flush=True)
    return final


def offline_outputs(notebook: Path, vega_url: str = "../_static/vega/") -> None:
    """Rewrite an executed notebook's HTML outputs so they name no CDN: Altair's fallback loader points at the
    book's vendored Vega (``vega_url``, relative to ``book/chapters``), as the built pages do
    (:func:`lmconv.book.vendor.offline_page`)."""
    from .vendor import offline_page

    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            for mime, text in out.get("data", {}).items():
                if mime.endswith("text/html"):
                    text = "".join(text) if isinstance(text, list) else text
                    out["data"][mime] = offline_page(text, vega_url)
    write_text(notebook, json.dumps(nb, ensure_ascii=False, indent=1) + "\n")


def ledger_of(name: str, book_dir: Path | None = None) -> Path:
    """The analyses an executed chapter ran (:func:`lmconv.analysis.record`); absent when it ran none."""
    return (book_dir or paths.BOOK) / "chapters" / f"{name}.analyses.json"


EXERCISES_INCLUDE = "/_generated/exercises.py"  # what the solutions literalinclude (rooted at the book's sources)
CLASSROOM_INCLUDE = "/_generated/classroom.yaml"  # the course map shows the classroom profile, its measured times


def prepare_book_dir(book_dir: Path) -> None:
    """Copy the notebook sources beside the book so each figure's caption can link to its code, and the exercises'
    solutions and the classroom profile where the pages include them from (``EXERCISES_INCLUDE``,
    ``CLASSROOM_INCLUDE``), so any copy of book/ builds."""
    gen = book_dir / "_generated" / "notebooks"
    gen.mkdir(parents=True, exist_ok=True)
    for f in paths.NOTEBOOKS.glob("*.md"):
        shutil.copy2(f, gen / f.name)
    from ..chapters import exercises

    shutil.copy2(exercises.__file__, book_dir / EXERCISES_INCLUDE.lstrip("/"))
    shutil.copy2(paths.PROFILES / "classroom.yaml", book_dir / CLASSROOM_INCLUDE.lstrip("/"))
    static = book_dir / "_static"
    if not (static / "vega" / "vega.min.js").exists():
        raise LmconvError(f"the vendored chart libraries are missing in {static}/vega", "run `make setup`")


def partial_toc(book_dir: Path) -> Path | None:
    """Where some executed pages are missing (``make chapter`` before the first ``make book``): a table of contents
    of the executed ones alone, written under ``_build``, the first of them its root; None when every page is there."""
    pages = [CHAPTER_PREFIX + name for name in toc_chapters(book_dir)]
    present = [p for p in pages if (book_dir / f"{p}.ipynb").exists()]
    if len(present) == len(pages):
        return None
    if not present:
        raise LmconvError(
            f"no executed chapter in {book_dir / CHAPTER_PREFIX.rstrip('/')} to build",
            "execute one first (make chapter NAME=01_suite), or build the whole book (make book)",
        )
    toc = {"format": "jb-book", "root": present[0]}
    if present[1:]:
        toc["chapters"] = [{"file": p} for p in present[1:]]
    out = book_dir / "_build" / "partial_toc.yml"
    write_text(out, yaml.safe_dump(toc, sort_keys=False))
    print(
        f"[book] {len(present)} of {len(pages)} chapters executed: building those alone (their links to the others "
        "stay unresolved); make book builds the whole book",
        flush=True,
    )
    return out


def build_html(book_dir: Path | None = None, strict: bool = True) -> Path:
    """Render the book with ``jupyter-book build`` (warnings are errors when ``strict``). Where some chapters have
    not been executed yet, only the executed ones are built (:func:`partial_toc`), without ``strict``.

    Sphinx works in ``_build/.work`` (kept, so a rebuild with nothing changed is quick); the finished HTML
    replaces ``_build/html`` in one rename, so a killed build never leaves a half-written site there.
    """
    book_dir = book_dir or paths.BOOK
    prepare_book_dir(book_dir)
    partial = partial_toc(book_dir)
    work = book_dir / "_build" / (".work-partial" if partial else ".work")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [
        str(jb),
        "build",
        str(book_dir),
        "--config",
        str(paths.BOOK_CONFIG),
        "--toc",
        str(partial or book_dir / "_toc.yml"),
        "--path-output",
        str(work),
    ]
    if strict and not partial:
        cmd += ["-W", "-n", "--keep-going"]
    print(f"[book] {' '.join(cmd)}", flush=True)
    env = {**os.environ, "LMCONV_BOOK_DIR": str(book_dir)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    log = book_dir / "_build" / "build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    write_text(log, proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise LmconvError(f"jupyter-book build failed:\n{tail}", f"full log: {log}")
    final = book_dir / "_build" / "html"
    with atomic_dir(final) as tmp:
        shutil.copytree(work / "_build" / "html", tmp, dirs_exist_ok=True)
    return final


def build(
    profile: str,
    book_dir: Path | None = None,
    train: bool = True,
    chapters: list[str] | None = None,
    extra: dict | None = None,
) -> Path:
    """The whole pipeline: train the profile's suite(s), execute every chapter, render the HTML. The time of
    each stage is recorded (:func:`record_build`)."""
    from ..training import profiles
    from ..training import train as train_mod

    book_dir = book_dir or paths.BOOK
    names = chapters or toc_chapters(book_dir)
    stages = BuildStages(profile)
    if train:
        for p in dict.fromkeys([profile, *companion_profiles(profile)]):
            t0 = time.perf_counter()
            train_mod.train_profile(profiles.load(p))
            took = stages.add(f"train {p}", time.perf_counter() - t0)
            print(f"[book] suite {p!r} ready ({took:.0f} s)", flush=True)
    for name in names:
        params = {"profile": profile, **(extra or {})}
        t0 = time.perf_counter()
        current = name != "status" and is_current(name, params, book_dir)  # the status page reports every build
        if current:
            print(f"[chapter] {name} is up to date (same notebook, parameters, code and suites)", flush=True)
        else:
            run_chapter(name, params, book_dir)
        stages.add(f"chapter {name}", time.perf_counter() - t0, ran=not current)
    t0 = time.perf_counter()
    html = build_html(book_dir)
    stages.add("html", time.perf_counter() - t0)
    record_build(profile, stages.all())
    return html


class BuildStages:
    """The stages of the build under way, each also written to ``builds/unfinished.json`` as it ends, so that an
    interrupted build's times are not lost: the next build of the data home carries them forward (the stages it
    finished, with ``"attempt"`` numbering the interrupted builds from 1; the time of the stage it was stopped in
    is lost, and that stage's work, resumed, counts in the next attempt). An unfinished build of another profile
    is not carried forward."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.stages: list[dict] = []
        f = builds_dir() / "unfinished.json"
        left = read_json(f) if f.exists() else {}
        self.earlier: list[dict] = left["stages"] if left.get("profile") == profile else []
        self.attempt = 1 + max((s.get("attempt", 0) for s in self.earlier), default=0)

    def add(self, stage: str, seconds: float, **more: object) -> float:
        """Record a finished stage (and its time, which it returns)."""
        self.stages.append({"stage": stage, "seconds": round(seconds, 1), **more})
        write_json(builds_dir() / "unfinished.json", {"profile": self.profile, "stages": self._tagged()})
        return self.stages[-1]["seconds"]

    def _tagged(self) -> list[dict]:
        return [*self.earlier, *({**s, "attempt": self.attempt} for s in self.stages)]

    def all(self) -> list[dict]:
        """Every stage of this build, after those of the interrupted builds before it (when there were any)."""
        return self._tagged() if self.earlier else list(self.stages)


def builds_dir() -> Path:
    """Where the stage times of the book's builds are kept: ``first.json`` (the first build in this data home, the
    one a newcomer waits for) and ``latest.json``."""
    return paths.data_home() / "builds"


def record_build(profile: str, stages: list[dict]) -> dict:
    """Write one build's stage times as the latest build, and as the first when this data home has none yet; the
    record of an unfinished build (:class:`BuildStages`) is folded in and removed."""
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "profile": profile,
        "stages": stages,
        "total_s": round(sum(s["seconds"] for s in stages), 1),
    }
    write_json(builds_dir() / "latest.json", record)
    if not (builds_dir() / "first.json").exists():
        write_json(builds_dir() / "first.json", record)
    (builds_dir() / "unfinished.json").unlink(missing_ok=True)
    return record


def build_records() -> dict[str, dict]:
    """The recorded builds of this data home that exist: ``{"first": …, "latest": …}``."""
    return {k: read_json(f) for k in ("first", "latest") if (f := builds_dir() / f"{k}.json").exists()}


def companion_profiles(profile: str) -> list[str]:
    """Suites a book profile needs besides its own (the sweep and annealing experiments), from its YAML; the fp32
    reference of the precision comparison only where the profile itself does not train in fp32."""
    from ..training import profiles

    return list(profiles.needed_companions(profile).values())  # see profiles.companion
