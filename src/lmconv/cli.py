"""``lmconv …`` and ``python -m lmconv …``: the same functions the notebooks call."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from . import paths
from .errors import LmconvError
from .io import DISK_ERRNOS, DiskError


def _offline() -> None:
    """The default pipeline never reaches a hub: local suites only, hub libraries told so."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _csv(kind: type):
    def parse(text: str) -> list:
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}: {text!r}") from e

    return parse


def _param_value(name: str, text: str):
    """``-p NAME VALUE``: VALUE as JSON, or a bare string; text that starts as JSON must be JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip()[:1] in ("[", "{", '"'):
            raise LmconvError(
                f"-p {name} {text!r} is not valid JSON ({e.msg} at column {e.colno})",
                "quote the whole value for the shell and write JSON inside: e.g. -p seeds '[1, 2]' or "
                "-p sizes '[\"1.1m\"]'",
            ) from e
        return text


def _checked(command: str, **values) -> None:
    """The chapters' parameter checks (:mod:`lmconv.chapters.params`) on the command line's values that were given."""
    from .chapters import params

    try:
        params.validate(**{k: v for k, v in values.items() if v is not None})
    except LmconvError as e:  # the same problem; the fix in the command line's terms
        raise LmconvError(e.problem, f"change that option of lmconv {command} (lmconv {command} --help)") from None


def cmd_profiles(_a) -> None:
    from .training import profiles

    for name in profiles.available():
        p = profiles.load(name)
        print(
            f"{name:12s} {', '.join(p.sizes)} × seeds {list(p.seeds)} × {p.arm().train.steps} steps; "
            f"arms: {', '.join(p.arms)}"
        )


def cmd_corpus(a) -> None:
    from .data import corpus

    print(json.dumps(corpus.manifest(a.corpus), indent=1))


def cmd_train(a) -> None:
    from .errors import choose
    from .training import profiles, train

    profile = profiles.load(a.profile)
    for arm in a.arms or []:
        choose("arm", arm, profile.arms, f"pick arms of profile {profile.name}: --arms {','.join(profile.arms)}")
    root = train.train_profile(profile, a.arms, a.sizes, a.seeds, progress=not a.quiet, jobs=a.jobs)
    print(f"suite ready: {root}")


def cmd_analyze(a) -> None:
    from . import analysis

    _checked(
        "analyze",
        profile=a.profile,
        arm=a.arm,
        sizes=a.sizes,
        seeds=a.seeds,
        steps=a.steps,
        probe_tokens=a.probe_tokens,
    )
    kw = dict(progress=not a.quiet)
    with contextlib.ExitStack() as stack:
        if a.scheduler or a.workers:
            from .analysis import fanout

            kw["client"] = stack.enter_context(fanout.client(a.scheduler, a.workers or 2))
        probe = analysis.probe_settings(a.profile, a.probe_tokens)
        r = analysis.run(a.profile, a.arm, a.sizes, a.seeds, a.steps, probe, **kw)
    print(
        f"analysed {r.family}: sizes {r.sizes}, seeds {r.seeds}, {len(r.steps)} steps, "
        f"{r.probe.n_tokens} probe tokens; tables: " + ", ".join(f"{k} {len(v)} rows" for k, v in r.tables.items())
    )


def cmd_chapter(a) -> None:
    from . import book

    if a.tables:  # tables mode for this chapter (and the kernel papermill starts, which inherits it)
        from .checkpoints import bundle

        os.environ[paths.TABLES_ENV] = str(Path(a.tables).expanduser().resolve())
        bundle.active()  # a folder that is no bundle stops here, before a kernel starts
    params = {"profile": a.profile, **{k: _param_value(k, v) for k, v in a.p}}
    out = book.run_chapter(a.name, params, Path(a.book_dir) if a.book_dir else None)
    print(f"executed: {out}")
    if a.build:
        print(f"book: {book.build_html(Path(a.book_dir) if a.book_dir else None)}/index.html")


def cmd_book(a) -> None:
    from . import book

    html = book.build(a.profile, Path(a.book_dir) if a.book_dir else None, train=not a.no_train, chapters=a.chapters)
    print(f"book built: {html}/index.html")


def cmd_status(a) -> None:
    from .book import status
    from .training import profiles

    print(json.dumps(status.suite_status(profiles.load(a.profile).name), indent=1))


def cmd_pdf(a) -> None:
    from .book import pdf

    pdf.build_pdf(Path(a.book_dir) if a.book_dir else None)


def cmd_release(a) -> None:
    from .book import release

    print(f"release bundle: {release.make_bundle(Path(a.out) if a.out else None)}")


def cmd_hub_cache(a) -> None:
    from . import analysis
    from .checkpoints import hubcache

    _checked("hub-cache", profile=a.profile, sizes=a.sizes, seeds=a.seeds, steps=a.steps)
    suite = analysis.Suite.open(a.profile)
    fam = suite.family()
    src = suite.source
    sizes = a.sizes or src.sizes(fam)
    seeds = a.seeds or src.seeds(fam, sizes[0])
    steps = a.steps or src.steps(fam, sizes[0])
    repos = hubcache.build(Path(a.out), src, fam, sizes, seeds, steps)
    print(f"hub cache in {a.out}: {', '.join(repos)}")


def cmd_identity(a: argparse.Namespace) -> None:
    from .book import identity

    if a.write:
        for path in identity.write():
            print(f"rewrote {path.relative_to(paths.ROOT)}")
    problems = identity.stale()
    for p in problems:
        print(p)
    if problems:
        raise LmconvError(
            f"{len(problems)} place(s) disagree with lmconv.REPOSITORY / __version__",
            "run `lmconv identity --write`",
        )
    print(f"{identity.install_spec()}: every file agrees")


def cmd_student(a: argparse.Namespace) -> None:
    from .book import student

    written = student.write(Path(a.out))
    print(f"{len(written)} student notebooks (no solutions) in {a.out}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmconv", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    add("profiles", cmd_profiles, "list the training profiles")
    sp = add("corpus", cmd_corpus, "prepare the corpus split and print its manifest (checksums, provenance)")
    sp.add_argument("--corpus", default="brown", help="'brown' or 'textdir:/path' (default: brown)")

    def profile(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--profile", default="default", help="profile name or YAML path (default: default)")

    def book_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--book-dir", default=None, help="a copy of book/ to work in (default: book/)")

    def selection(sp: argparse.ArgumentParser, quiet: bool = True) -> None:
        profile(sp)
        sp.add_argument("--sizes", type=_csv(str), help="comma-separated sizes (default: all)")
        sp.add_argument("--seeds", type=_csv(int), help="comma-separated seeds (default: all)")
        if quiet:
            sp.add_argument("--quiet", action="store_true", help="no progress bars")

    sp = add("train", cmd_train, "train (or resume) a profile's suite of checkpoints")
    selection(sp)
    sp.add_argument("--arms", type=_csv(str), help="comma-separated arms (default: all)")
    sp.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="train up to N runs at once, each in its own process at the profile's thread count (same files as "
        "one at a time; default: the profile's jobs)",
    )
    sp = add("analyze", cmd_analyze, "run the one-pass engine over a suite and fill the metric cache")
    selection(sp)
    sp.add_argument("--arm", default=None, help="the arm to analyse (default: the profile's first)")
    sp.add_argument("--steps", type=_csv(int), help="comma-separated steps, ascending (default: all)")
    sp.add_argument("--probe-tokens", type=int, default=None, help="probe size in tokens (default: the profile's)")
    sp.add_argument("--workers", type=int, default=None, help="fan out over an embedded Dask LocalCluster of N workers")
    sp.add_argument("--scheduler", default=None, help="fan out over a running Dask cluster (tcp://HOST:PORT)")
    sp = add("chapter", cmd_chapter, "execute one chapter notebook with papermill (parameters with -p)")
    sp.add_argument("name", help="notebook name, e.g. 02_kl_convergence")
    profile(sp)
    sp.add_argument(
        "-p",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter of the chapter's parameters cell; VALUE is JSON (e.g. -p sizes '[\"1.1m\"]') or a bare "
        "string",
    )
    book_dir(sp)
    sp.add_argument("--build", action="store_true", help="render the HTML afterwards")
    sp.add_argument(
        "--tables",
        metavar="BUNDLE",
        default=None,
        help="tables mode: read the suites' tables from a release bundle's folder (make release) instead of "
        "training and analysing here (sets LMCONV_TABLES)",
    )
    sp = add("book", cmd_book, "train what is missing, execute every chapter, render the HTML book")
    profile(sp)
    book_dir(sp)
    sp.add_argument("--no-train", action="store_true", help="fail instead of training missing suites")
    sp.add_argument("--chapters", type=_csv(str), default=None, help="only these chapters")
    sp = add("status", cmd_status, "what a suite holds: runs, steps, manifest hash")
    profile(sp)
    sp = add("pdf", cmd_pdf, "print the built book to one PDF (headless Chromium, offline)")
    book_dir(sp)
    sp = add("release", cmd_release, "bundle the built book, executed notebooks, tables and SHA256SUMS")
    sp.add_argument("--out", default=None, help="the bundle's folder (default: _release/ in the checkout)")
    sp = add("hub-cache", cmd_hub_cache, "mirror a local suite as a Hugging Face hub cache folder")
    selection(sp, quiet=False)
    sp.add_argument("--steps", type=_csv(int), help="comma-separated steps (default: all)")
    sp.add_argument("--out", required=True, help="the hub cache folder to fill (e.g. $HF_HUB_CACHE)")
    sp = add("identity", cmd_identity, "check (or --write) every file that repeats the repository address and release")
    sp.add_argument("--write", action="store_true", help="rewrite the files that disagree")
    sp = add("student", cmd_student, "write every chapter's MyST source without the exercises' solutions")
    sp.add_argument("--out", required=True, help="the folder to write the student notebooks to (e.g. _student)")
    return p


def main(argv: list[str] | None = None) -> int:
    _offline()
    args = parser().parse_args(argv)
    try:
        args.fn(args)
    except LmconvError as e:
        print(f"lmconv: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a read-only folder met outside lmconv.io's writers (mkdir, a library)
        if e.errno not in DISK_ERRNOS:
            raise
        print(f"lmconv: error: {DiskError(e, e.filename or paths.data_home())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmconv: interrupted (rerun the same command to continue)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
