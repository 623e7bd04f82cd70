"""What the `harness` commands share: consoles, exit codes, one-line failures, run and price options."""

from __future__ import annotations

import codecs
import math
import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from harness.catalog.prices import PriceQuote


class PipeConsole(Console):
    """A console whose reader went away (`harness compare ... | head -1`) goes quiet instead of ending the
    command (rich exits 1 there): the files a command writes after printing its table are still written."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        to_devnull(self.file)


def to_devnull(stream: IO[str]) -> None:
    """Point a stream whose reader went away at /dev/null: later writes, and the exit's flush, go nowhere
    quietly (a stream with no descriptor is left as it is)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def write_stdout(text: str) -> None:
    """`text` on stdout as it is (a task file to pipe on); a reader that went away (`| head`) is not an
    error (typer would end the command with exit 1)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        to_devnull(sys.stdout)


def _question_marks(e: UnicodeError) -> tuple[str | bytes, int]:
    """Encoding error handler: `?` for characters the encoding lacks; bytes that a file name could not
    decode (surrogateescape) go out as they came in."""
    if not isinstance(e, UnicodeEncodeError):
        raise e
    bad = e.object[e.start : e.end]
    if all(0xDC80 <= ord(c) <= 0xDCFF for c in bad):
        return bytes(ord(c) - 0xDC00 for c in bad), e.end
    return "?" * len(bad), e.end


codecs.register_error("harness-question-marks", _question_marks)


def replace_unencodable(stream: IO[str]) -> None:
    """Where a stream's encoding cannot write the `—`, `±` and `…` that tables, notes and typer's help
    hold (PYTHONIOENCODING=ascii), write `?` for them instead of ending the command with a
    UnicodeEncodeError before its files are written. (stderr needs none of this: Python writes what its
    encoding lacks there as backslash escapes.)"""
    try:
        "—±…×µ→".encode(getattr(stream, "encoding", None) or "utf-8")
    except (LookupError, UnicodeEncodeError):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="harness-question-marks")


replace_unencodable(sys.stdout)
# emoji=False: a file named `:fire:.yaml` is printed as named
out = PipeConsole(emoji=False)
err = PipeConsole(stderr=True, soft_wrap=True, emoji=False)
if not out.is_terminal:  # pipes and CI logs: wide enough for the points table
    out = PipeConsole(width=200, emoji=False)

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3


def fail(messages: list[str] | str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print each message as one line on stderr (no traceback) and return the Exit to raise."""
    for m in [messages] if isinstance(messages, str) else messages:
        err.print(m, markup=False, highlight=False)
    return typer.Exit(code)


def finite(
    min: float | None = None, max: float | None = None, *, above: float | None = None
) -> dict[str, Any]:
    """`typer.Option` arguments of a float option that must be finite and within [min, max], or above
    `above` (a limit, a rate): a parser that checks all of it, and min/max for the range `--help` shows.
    nan fails every comparison, so typer's own range check refused it with a misleading message
    ("should be <= 1"), and with a parser typer checks no range: the parser names both."""

    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number") from None
        if not math.isfinite(number):
            raise typer.BadParameter(f"{text} is not a finite number")
        if above is not None and not number > above:
            raise typer.BadParameter(f"{text} is not > {above:g}")
        if min is not None and number < min:
            raise typer.BadParameter(f"{text} is not >= {min:g}")
        if max is not None and number > max:
            raise typer.BadParameter(f"{text} is not <= {max:g}")
        return number

    return {"min": min, "max": max, "parser": parse}


def _writable_parent(option: str, path: Path) -> None:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise fail(f"{option}: {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise fail(f"{option}: {path}: cannot write in {parent}")


# the files a run writes in its directory (telemetry-*, engine-*.log, llama-bench-* too): an output over
# one loses it
RUN_FILES = (
    "manifest.json",
    "points.csv",
    "points.parquet",
    "requests.jsonl",
    "token-counts.jsonl",
    "report.md",
)


def _a_run_file(name: str) -> bool:
    return name in RUN_FILES or name.startswith(("telemetry-", "engine-", "llama-bench-"))


def output_file(option: str, path: Path | None) -> Path | None:
    """Check an output file option before any work: not a directory, not one of a run's own files (`--html
    RUN/manifest.json` had replaced the manifest, and the run could not be read again), and its folder can
    be made."""
    if path is not None:
        if path.is_dir():
            raise fail(f"{option}: {path} is a directory (give a file path)")
        if (path.parent / "manifest.json").is_file() and _a_run_file(path.name):
            raise fail(f"{option}: {path} is a file of the run in {path.parent}: give another path")
        _writable_parent(option, path)
    return path


def reading_runs(runs: list[Path]) -> AbstractContextManager[None]:
    """`harness.runpoints.reading` over the runs a command reads, named as the run, or how many they were."""
    from harness.runpoints import reading

    return reading(str(runs[0]) if len(runs) == 1 else f"one of the {len(runs)} runs")


def dangling(path: Path) -> str | None:
    """Why `path` cannot be made as a directory although nothing is there: a link to nothing."""
    if path.is_symlink() and not path.exists():
        return f"a link to {os.readlink(path)}, which does not exist"
    return None


def output_dir(option: str, path: Path | None) -> Path | None:
    """Check an output directory option before any work: not a file nor a link to nothing, and it can be
    made."""
    if path is not None:
        if path.exists() and not path.is_dir():
            raise fail(f"{option}: {path} is not a directory")
        if why := dangling(path):
            raise fail(f"{option}: {path}: {why}")
        if (path / "manifest.json").is_file():  # its points.csv would be replaced by the output's
            raise fail(f"{option}: {path} is a run directory: give a folder of its own for the output")
        if not path.exists():
            _writable_parent(option, path)
    return path


PriceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--price",
        help="DEVICE=USD_PER_HOUR, e.g. h100-sxm=3.10, or a SkyPilot name for the devices it can be, e.g. "
        "H100=2.99 (repeatable)",
    ),
]
PricesFileOpt = Annotated[Path | None, typer.Option("--prices", help="price YAML file (prices.yaml shape)")]
ProviderOpt = Annotated[
    str | None, typer.Option("--provider", help="use this provider's prices.yaml entries")
]
BandwidthOpt = Annotated[
    list[str] | None,
    typer.Option("--bandwidth", help="DEVICE=GB/s memory bandwidth to use for the roofline, e.g. cpu=20"),
]
UtilizationOpt = Annotated[float, typer.Option(**finite(0.01, 1.0), help="share of rented hours busy")]
KwhOpt = Annotated[
    float | None,
    typer.Option(
        "--usd-per-kwh",
        "--kwh",
        **finite(0.0),
        help="US$ per kWh of power you pay for (hardware you own or whose power is billed apart; a cloud's "
        "$/hour already includes it): adds energy cost to points with J/token (GPU board and CPU package "
        "energy only, no PUE)",
    ),
]


def prices(price: list[str] | None, prices_file: Path | None, provider: str | None) -> dict[str, PriceQuote]:
    """The price of each device: `--price` (a hardware key, or the SkyPilot name `cloud launch --price`
    takes, for every catalog device it can be: `H100=2.99` prices h100-sxm and h100-pcie), else the
    prices file, the provider's or the default."""
    from harness.catalog import CatalogError
    from harness.catalog.hardware import devices
    from harness.catalog.prices import OVERRIDE, PriceQuote, parse_price_overrides, resolve_prices
    from harness.cloud.cost import catalog_devices

    try:
        given = parse_price_overrides(price or [])
        table = dict(resolve_prices(given, prices_file, provider))
    except CatalogError as e:
        raise fail(str(e)) from None
    # a device key in any case is that device's own price (GH200 is gh200, RunPod's H100-SXM is h100-sxm),
    # which wins over a SkyPilot name that covers it (H100: h100-sxm and h100-pcie). No two SkyPilot names
    # the catalog knows cover one device unless one of them is its key
    own = {name.lower() for name in given if name.lower() in devices()}
    for name, usd in given.items():
        if name in devices():
            continue
        if name != name.lower() and name.lower() in given:  # CPU=0.1 beside cpu=0.1 (one price: RepeatedName)
            del table[name]
        elif name.lower() in devices():
            del table[name]
            table[name.lower()] = PriceQuote(name.lower(), usd, OVERRIDE, OVERRIDE)
        elif keys := catalog_devices(name):
            del table[name]
            table |= {k: PriceQuote(k, usd, f"{OVERRIDE} {name}", OVERRIDE) for k in keys if k not in own}
    return table


def bandwidths(items: list[str] | None) -> dict[str, float]:
    from harness.runroofline import parse_bandwidths

    try:
        return parse_bandwidths(items or [])
    except ValueError as e:
        raise fail(str(e)) from None


def check_runs(paths: list[Path]) -> list[Path]:
    """The run directories `paths` name (see `runpaths.resolve_runs`); exit 2 for one that is none."""
    from harness.results import RunNotFound
    from harness.runpaths import resolve_runs

    try:
        runs, notes = resolve_runs(paths)
    except RunNotFound as e:
        raise fail(str(e)) from None
    for n in notes:
        err.print(f"note: {n}", markup=False, highlight=False)
    if paths and not runs:
        raise fail("no run directories among the paths given")
    return runs


def note_runs_without_points(runs: list[Path], points: Any) -> None:
    """A note for each run given that has no finished point in `points` (a `runinfo.points_frame`):
    else it would add nothing to a table without a word (claims, recommend)."""
    from harness.results import RunNotFound, read_manifest

    have = set(points["run_id"]) if "run_id" in getattr(points, "columns", ()) else set()
    for r in runs:
        try:
            m = read_manifest(r)
        except RunNotFound:
            continue
        if (m.get("run_id") or r.name) not in have:
            err.print(
                f"note: {r}: no finished points (status: {m.get('status')}): nothing of it is used here",
                markup=False,
                highlight=False,
            )
