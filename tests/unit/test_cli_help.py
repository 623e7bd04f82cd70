"""The help of every command: each option and argument says what it is for, and a switch shows no type
(typer 0.2x wrote `--dry-run <bool>`, and `--dry-run true` then failed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer.main
from typer.testing import CliRunner

from harness.cli import app


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    subs = getattr(cmd, "commands", None)
    if subs is None:
        yield path, cmd
        return
    for name, sub in subs.items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_option_and_argument_has_a_help_text() -> None:
    assert len(COMMANDS) >= 15  # the walk reached the subcommands (model, telemetry, cloud)
    missing = [
        f"{' '.join(path)} {p.name}"
        for path, cmd in COMMANDS
        for p in cmd.params
        if not (getattr(p, "help", None) or "").strip()
    ]
    assert missing == []


def test_switches_show_no_type_in_help() -> None:
    runner = CliRunner()
    for path in (("run",), ("serve-fake",), ("cloud", "launch")):
        res = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert res.exit_code == 0, res.output
        assert "--help" in res.output and "<bool>" not in res.output, res.output
    flags = [(path, p.name) for path, cmd in COMMANDS for p in cmd.params if getattr(p, "is_flag", False)]
    assert len(flags) >= 8
    for path, cmd in COMMANDS:
        ctx = cmd.make_context(cmd.name, [], resilient_parsing=True)
        for p in cmd.params:
            if getattr(p, "is_flag", False):
                assert p.display_type_rich(ctx) is None, (path, p.name)


def test_each_commands_summary_is_one_line() -> None:
    """Command lists show a command's first paragraph with its line breaks: a docstring wrapped there
    broke the list mid-sentence."""
    summaries = {" ".join(path): (cmd.help or "").strip().split("\n\n")[0] for path, cmd in COMMANDS}
    assert all(summaries.values())
    assert [path for path, text in summaries.items() if "\n" in text] == []


def test_flags_renamed_to_name_their_units_still_take_their_old_spelling() -> None:
    """Each renamed flag reads its old spelling too, so commands written before keep working."""
    renamed = {
        ("cost",): [
            ("--usd-per-kwh", "--kwh"),
            ("--output-tok-s", "--tok-s"),
            ("--j-per-output-token", "--j-per-token"),
        ],
        ("compare",): [("--usd-per-kwh", "--kwh")],
        ("roofline",): [("--context-tokens", "--context")],
        ("gpu-info",): [("--duration-s", "--seconds")],
        ("telemetry", "record"): [("--duration-s", "--seconds")],
        ("model", "make-gguf"): [("--context-tokens", "--context")],
        ("cloud", "launch"): [("--disk-gb", "--disk-size")],
    }
    cmds = dict(COMMANDS)
    for path, pairs in renamed.items():
        opts = [p.opts for p in cmds[path].params]
        for new, old in pairs:
            assert [new, old] in opts, (path, new, old, opts)
