"""The `harness` command line: the typer app; the commands live in the modules beside this one."""

from __future__ import annotations

import errno
import sys
from typing import Any

import typer
import typer.core
import typer.rich_utils

from harness.cli import estimates, results, run, tools
from harness.cli.cloud import cloud_app
from harness.cli.common import EXIT_BAD_INPUT, PipeConsole, err


def _flags_show_no_type() -> None:
    """Typer 0.2x writes a switch's type in help (`--dry-run <bool>`) as if it took a value, and
    `--dry-run true` then fails: show no type for switches (flags) at all."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None:
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    option.display_type_rich = display_type_rich


def _typer_consoles_go_quiet_on_a_broken_pipe() -> None:
    """typer prints help and usage errors through consoles of its own, which exit 1 when their reader has
    gone (`harness cost --help | head -1`), after pointing stdout at /dev/null whichever stream broke: make
    them go quiet as the commands' own consoles do, so that help ends with 0 and a usage error with its
    own code (2)."""
    made = getattr(typer.rich_utils, "_get_rich_console", None)
    if made is None:
        return

    def console(stderr: bool = False) -> Any:
        c = made(stderr=stderr)
        c.on_broken_pipe = lambda: PipeConsole.on_broken_pipe(c)
        return c

    typer.rich_utils._get_rich_console = console


_flags_show_no_type()
_typer_consoles_go_quiet_on_a_broken_pipe()
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark real LLM inference engines: throughput, latency, energy, cost.",
)
app.add_typer(tools.model_app, name="model")
app.add_typer(tools.telemetry_app, name="telemetry")
app.add_typer(cloud_app, name="cloud")
app.command()(run.validate)
app.command()(run.run)
app.command("report")(results.report_cmd)
app.command("compare")(results.compare_cmd)
app.command("cost")(estimates.cost_cmd)
app.command("roofline")(estimates.roofline_cmd)
app.command("claims")(estimates.claims_cmd)
app.command("recommend")(estimates.recommend_cmd)
app.command("ls")(results.ls_cmd)
app.command("serve-fake")(tools.serve_fake)
app.command("gpu-info")(tools.gpu_info)


def main() -> None:
    from harness.results import RunNotFound

    if sys.stdout is None:  # `harness ls >&-`: Python found no descriptor 1
        err.print("note: standard output is closed: what this command prints there is lost", markup=False)
    try:
        app()
    except RunNotFound as e:  # a run directory found unreadable partway (its points table, say)
        err.print(str(e), markup=False, highlight=False)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except OSError as e:
        if e.filename is None and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            # a full disk met inside a writer (pandas, pyarrow, PIL, gguf) that does not name the file
            err.print(f"{e.strerror}: the output could not be written", markup=False, highlight=False)
            raise SystemExit(EXIT_BAD_INPUT) from None
        if e.filename is None:  # not about a path the user gave or set: a real fault, with its traceback
            raise
        # a path that cannot be read or written (HARNESS_CACHE naming a file, a full disk, no permission)
        where = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
        err.print(f"{where}: {e.strerror or e}", markup=False, highlight=False)
        raise SystemExit(EXIT_BAD_INPUT) from None


if __name__ == "__main__":
    main()
