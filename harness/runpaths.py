"""Run directories found from the paths a user gives: a run, a file in one, or a folder with runs below
it (`results/*`, `results/evidence`); compare outputs, report files and plot folders passed over with a
note."""

from __future__ import annotations

from pathlib import Path

from harness.results import read_manifest

COMPARE_OUTPUT = "compare.md"  # `harness compare` writes it into every output directory


def resolve_runs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The run directories named by `paths`, and notes on what was passed over.

    A run directory (with manifest.json) stands for itself, and so does a file in it (its manifest.json);
    any other directory for the runs below it, up
    to MAX_SEARCH_DEPTH folders down, hidden ones passed over (`results`, `results/evidence`, a cloud fetch
    `results/<cluster>`); `harness compare` output
    directories, files (a report's HTML, a README) and the plot folders of a report over several runs are
    passed over with a note (so `results/*` works, also after a compare or such a report); where no run is
    found at all, the first file given is said not to be a run. A path with no
    run in or below it raises RunNotFound. Each run comes once, in the order given.
    """
    runs: list[Path] = []
    notes: list[str] = []
    files: list[Path] = []  # passed over, unless nothing else is given
    for p in paths:
        if (p / "manifest.json").is_file():
            read_manifest(p)  # readable
            runs.append(p)
        elif (p / COMPARE_OUTPUT).is_file():
            notes.append(f"{p}: a compare output, not a run: passed over")
        elif report_plots_dir(p):
            notes.append(f"{p}: a report's plots, not a run: passed over")
        elif p.is_file() and (p.parent / "manifest.json").is_file():  # RUN/manifest.json, RUN/points.csv
            read_manifest(p.parent)
            runs.append(p.parent)
            notes.append(f"{p}: a file of run directory {p.parent}: using that run")
        elif p.is_file():  # a glob's README.md, a report's HTML
            what = "a report" if p.suffix == ".html" else "a file"
            notes.append(f"{p}: {what}, not a run: passed over")
            files.append(p)
        elif p.is_dir() and (inner := runs_below(p)):
            for c in inner:
                read_manifest(c)  # readable
            runs += inner
            notes.append(f"{p}: not a run directory; using the {len(inner)} run(s) below it")
        else:
            read_manifest(p)  # raises with the reason
    if files and not runs:
        read_manifest(files[0])  # files alone: "not a run directory"
    return list(dict.fromkeys(runs)), notes


def report_plots_dir(p: Path) -> bool:
    """`p` is the `<name>-plots/` folder an HTML report `<name>.html` beside it wrote its PNGs into."""
    return p.name.endswith("-plots") and (p.parent / f"{p.name.removesuffix('-plots')}.html").is_file()


# how many folders below a given one runs are looked for (`results/<cluster>/evidence/<run>` is 3): a home
# folder or `/` given by mistake is not walked whole
MAX_SEARCH_DEPTH = 6


def runs_below(top: Path, depth: int = MAX_SEARCH_DEPTH) -> list[Path]:
    """Run directories under `top`, at most `depth` folders down, sorted by path; runs, compare outputs,
    hidden folders (`.venv`, `.git`) and links are not descended into."""
    found: list[Path] = []
    try:
        subs = sorted(
            c for c in top.iterdir() if not c.name.startswith(".") and c.is_dir() and not c.is_symlink()
        )
    except OSError:  # a folder this user cannot list (`harness report /` passes through /proc): no runs
        return found
    for sub in subs:
        if (sub / "manifest.json").is_file():
            found.append(sub)
        elif depth > 1 and not (sub / COMPARE_OUTPUT).is_file():
            found += runs_below(sub, depth - 1)
    return found
