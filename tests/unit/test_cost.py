"""Cost per token: the article's Mistral-7B example, devices, utilization, energy, and price lookup."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.catalog import CatalogError
from harness.catalog.prices import parse_price_overrides, resolve_prices
from harness.cost import CostInputs, energy_usd_per_million_tokens, usd_per_million_tokens
from tests.conftest import run_harness


def test_article_mistral_a100_example() -> None:
    # $0.75/h / (112 tok/s x 3600 s/h) x 1e6 = 750000 / 403200 = 1.860119...
    got = usd_per_million_tokens(0.75, 112)
    assert got == pytest.approx(1.8601190476, rel=1e-9)
    assert round(got, 2) == 1.86
    # the article states it per token: $1.86e-6
    assert round(got / 1e6, 8) == 1.86e-6


def test_article_mistral_h100_example() -> None:
    # $1.20/h / (247 tok/s x 3600) x 1e6 = 1200000 / 889200 = 1.349527...
    got = usd_per_million_tokens(1.20, 247)
    assert got == pytest.approx(1.3495276653, rel=1e-9)
    assert round(got, 2) == 1.35


def test_devices_and_utilization_scale_the_price() -> None:
    # 8 devices at $2.99/h, 1000 tok/s, busy half the time: 23.92 / (1000 x 3600 x 0.5) x 1e6 = 13.2888...
    assert usd_per_million_tokens(2.99, 1000, devices=8, utilization=0.5) == pytest.approx(13.288888889)


def test_energy_cost_per_million_tokens() -> None:
    # 2 J/token x $0.15/kWh / 3.6e6 J/kWh x 1e6 tokens = $0.08333...
    assert energy_usd_per_million_tokens(2.0, 0.15) == pytest.approx(0.0833333333)
    assert math.isnan(energy_usd_per_million_tokens(None, 0.15))
    assert math.isnan(energy_usd_per_million_tokens(math.nan, 0.15))


def test_cost_inputs_row_adds_energy_to_rent() -> None:
    row = CostInputs(1.20, 247, j_per_token=2.0, usd_per_kwh=0.15).row()
    assert row["usd_per_1m_tokens"] == pytest.approx(1.3495276653)
    assert row["total_usd_per_1m_tokens"] == pytest.approx(1.3495276653 + 0.0833333333)


def test_cost_columns_of_measured_points_count_devices_and_energy() -> None:
    """`harness cost RUN`, compare and the HTML report price points this way."""
    import pandas as pd

    from harness.cost import add_cost_columns

    points = pd.DataFrame(
        {
            "device": ["h100-sxm", "a100-80gb-sxm", "cpu"],
            "devices": [8, 1, 1],
            "output_tok_s": [2000.0, 100.0, 10.0],
            "energy_j_per_output_token": [0.9, None, 3.6],
        }
    )
    got = add_cost_columns(points, {"h100-sxm": 2.5, "a100-80gb-sxm": 1.5}, utilization=0.5, usd_per_kwh=0.2)
    # 2.5 $/h x 8 / (2000 tok/s x 3600 x 0.5) x 1e6 = 20 / 3.6e6 x 1e6 = 5.5556
    # 1.5 / (100 x 3600 x 0.5) x 1e6 = 8.3333; the cpu has no price
    assert got["usd_per_1m_tokens"].iloc[0] == pytest.approx(20 / 3.6)
    assert got["usd_per_1m_tokens"].iloc[1] == pytest.approx(1.5 / 0.18)
    assert math.isnan(got["usd_per_1m_tokens"].iloc[2])
    # energy: 0.9 J/token x 1e6 = 0.9e6 J = 0.25 kWh x 0.2 $/kWh = 0.05 $; 3.6 J/token: 0.2 $
    assert list(got["energy_usd_per_1m_tokens"].iloc[[0, 2]]) == pytest.approx([0.05, 0.2])
    assert math.isnan(got["energy_usd_per_1m_tokens"].iloc[1])
    assert got["total_usd_per_1m_tokens"].iloc[0] == pytest.approx(20 / 3.6 + 0.05)
    assert math.isnan(got["total_usd_per_1m_tokens"].iloc[1])  # energy unknown: no total
    assert "energy_usd_per_1m_tokens" not in add_cost_columns(points, {"h100-sxm": 2.5})


def test_no_throughput_is_not_a_price() -> None:
    assert math.isnan(usd_per_million_tokens(2.0, 0))
    assert math.isnan(usd_per_million_tokens(2.0, math.nan))
    with pytest.raises(ValueError, match="utilization"):
        usd_per_million_tokens(2.0, 100, utilization=0)
    with pytest.raises(ValueError, match="utilization"):
        usd_per_million_tokens(2.0, 100, utilization=1.5)


def test_price_overrides_parse_and_reject_garbage() -> None:
    assert parse_price_overrides(["h100-sxm=2.99", "cpu=$0.10"]) == {"h100-sxm": 2.99, "cpu": 0.10}
    for bad in ("h100-sxm", "h100-sxm=cheap", "=2", "h100-sxm=-1"):
        with pytest.raises(CatalogError, match="DEVICE=USD_PER_HOUR"):
            parse_price_overrides([bad])


def test_price_precedence_override_file_provider_default(tmp_path: Path) -> None:
    default = resolve_prices()
    # the article's two GPUs from one source, both at the low end of its range, and said so
    assert default["h100-sxm"].usd_per_hour == 2.49 and default["a100-80gb-sxm"].usd_per_hour == 1.49
    assert default["h100-sxm"].origin == "typical-gpu-cloud, seen 2026-Q1, low end of $2.49-3.99"
    assert default["a100-80gb-sxm"].origin == "typical-gpu-cloud, seen 2026-Q1, low end of $1.49-2.49"
    article = resolve_prices(provider="article-example")
    assert article["h100-sxm"].usd_per_hour == 1.20 and article["a100-80gb-sxm"].usd_per_hour == 0.75
    user = tmp_path / "prices.yaml"
    user.write_text(
        "prices:\n"
        "  - {device: h100-sxm, provider: mine, usd_per_hour: 2.10, seen: '2026-11', source: contract}\n"
        "  - {device: cpu, provider: mine, usd_per_hour: 0.05, seen: '2026-11', source: contract}\n"
    )
    got = resolve_prices({"a100-80gb-sxm": 1.0}, user, "article-example")
    assert got["h100-sxm"].usd_per_hour == 2.10 and "mine" in got["h100-sxm"].origin
    assert got["cpu"].usd_per_hour == 0.05
    assert got["a100-80gb-sxm"].usd_per_hour == 1.0 and got["a100-80gb-sxm"].origin == "--price"
    with pytest.raises(CatalogError, match=r"allowed: .*lambda"):
        resolve_prices(provider="nobody")


def test_bad_user_price_file_names_file_and_field(tmp_path: Path) -> None:
    user = tmp_path / "p.yaml"
    user.write_text("prices:\n  - {device: h100-sxm, provider: x, usd_per_hour: -3, seen: now, source: me}\n")
    with pytest.raises(CatalogError, match=r"p.yaml: prices\[0\].usd_per_hour"):
        resolve_prices(price_file=user)


_cli = run_harness


def test_cost_cli_typed_numbers_reproduce_the_article() -> None:
    a100 = _cli("cost", "--usd-per-hour", "0.75", "--output-tok-s", "112")
    h100 = _cli("cost", "--usd-per-hour", "1.20", "--output-tok-s", "247")
    assert a100.returncode == 0 and h100.returncode == 0, a100.stderr + h100.stderr
    assert a100.stdout.startswith("$1.86 per 1M output tokens ($1.86e-06 per token)")
    assert h100.stdout.startswith("$1.35 per 1M output tokens ($1.35e-06 per token)")


def test_cost_cli_bad_input_is_one_line_exit_2() -> None:
    res = _cli("cost", "--usd-per-hour", "0.75")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--output-tok-s" in res.stderr
    res = _cli("cost", "--usd-per-hour", "0.75", "--output-tok-s", "1", "--price", "nonsense")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--price: 'nonsense': expected DEVICE=USD_PER_HOUR" in res.stderr
    # zero or negative numbers would print $nan or a negative price
    res = _cli("cost", "--usd-per-hour", "1", "--output-tok-s", "0")
    assert (
        res.returncode == 2
        and "'--output-tok-s' / '--tok-s': 0 is not > 0" in res.stderr
        and "$" not in res.stdout
    )
    res = _cli("cost", "--usd-per-hour", "-3", "--output-tok-s", "5")
    assert res.returncode == 2 and "--usd-per-hour" in res.stderr and "$" not in res.stdout


def test_price_file_with_bad_yaml_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("prices: {a: [\n")
    res = _cli("cost", "--prices", str(f), "--usd-per-hour", "1", "--output-tok-s", "3")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    problem = "expected the node content, but found '<stream end>'"
    assert res.stderr.strip() == f"{f}: line 2: invalid YAML: {problem}"


def test_price_and_claims_files_are_read_as_strictly_as_scenarios(tmp_path: Path) -> None:
    """A key given twice, or `yes` for a boolean, is refused in a user's price or claims file as in a
    scenario (YAML 1.1 read `default: yes` as true, and a second `usd_per_hour:` replaced the first)."""
    from harness.catalog import CatalogError
    from harness.catalog.claims import load_claims_file
    from harness.catalog.prices import load_price_file

    entry = "  - {device: cpu, provider: me, usd_per_hour: 1, usd_per_hour: 2, seen: now, source: me}\n"
    twice = tmp_path / "twice.yaml"
    twice.write_text("prices:\n" + entry)
    with pytest.raises(CatalogError, match=r"twice.yaml: line 2: invalid YAML: duplicate key 'usd_per_hour'"):
        load_price_file(twice)
    yes = tmp_path / "yes.yaml"
    yes.write_text(
        "prices:\n  - {device: cpu, provider: me, usd_per_hour: 1, seen: now, source: me, default: yes}\n"
    )
    with pytest.raises(CatalogError, match=r"yes.yaml: prices\[0\].default"):
        load_price_file(yes)
    claims = tmp_path / "claims.yaml"
    claims.write_text("claims:\n  a: 1\n  a: 2\n")
    with pytest.raises(CatalogError, match="duplicate key 'a'"):
        load_claims_file(claims)


def test_a_price_entry_whose_range_is_upside_down_is_named_without_a_field(tmp_path: Path) -> None:
    """A check of the whole entry has no field to name: `prices[0]: ...`, not `prices[0].: ...`."""
    from harness.catalog import CatalogError
    from harness.catalog.prices import load_price_file

    f = tmp_path / "p.yaml"
    f.write_text(
        "prices:\n  - {device: cpu, provider: me, usd_per_hour: 2, usd_per_hour_high: 1, seen: x, source: y}"
        "\n"
    )
    with pytest.raises(CatalogError) as e:
        load_price_file(f)
    assert str(e.value) == f"{f}: prices[0]: usd_per_hour_high is below usd_per_hour"


def test_name_number_options_are_parsed_one_way() -> None:
    import pytest

    from harness.keyvalues import RepeatedName, name_numbers

    assert name_numbers(["h100-sxm=2.99", "cpu = $0.1"], unit_prefix="$") == {"h100-sxm": 2.99, "cpu": 0.1}
    assert name_numbers(["2.5", "H100=3"], bare=True) == {"": 2.5, "H100": 3.0}
    for bad, bare in (("2.5", False), ("=3", True), ("h100=0", False), ("h100=x", False), ("h100=", True)):
        with pytest.raises(ValueError) as e:
            name_numbers([bad], bare=bare)
        assert e.value.args == (bad,)
    # a name given twice in any case: the same number is one price, two numbers cannot both be meant
    assert name_numbers(["h100=2.99", "H100=2.99"]) == {"h100": 2.99, "H100": 2.99}
    for items in (["h100=2.99", "H100=3.05"], ["h100=2.99", "cpu=1", "h100 = 3"]):
        with pytest.raises(RepeatedName) as r:
            name_numbers(items)
        assert r.value.args == (items[0], items[-1])
    with pytest.raises(RepeatedName) as r:
        name_numbers(["2", "3"], bare=True)
    assert r.value.args == ("2", "3")


def test_the_cost_table_of_runs_names_each_rows_workload(tmp_path: Path) -> None:
    """Runs of 128/64 and 64/32 tokens sat side by side with nothing to tell their workloads apart."""
    ev = Path(__file__).resolve().parents[2] / "results" / "evidence"
    runs = [ev / "20261125T114708Z-quickstart-cpu", ev / "20261201T120142Z-vllm-tiny-cpu"]
    res = _cli("cost", *map(str, runs), "--price", "cpu=0.10", env={"COLUMNS": "250"})
    assert res.returncode == 0, res.stderr
    head = next(line for line in res.stdout.splitlines() if "workload (in/out)" in line)
    assert "┃ run " in head and "run_id" not in head
    rows = [line for line in res.stdout.splitlines() if "cpu |" in line]
    assert sum("128/64" in r for r in rows) == 3 and sum("64/32" in r for r in rows) == 2
    assert all("│         0.100 │" in r for r in rows)  # money: three significant digits, not "0.1"
    # a price for a device no point is on (not the recorded key): said, with the devices there are
    res = _cli("cost", str(runs[0]), "--price", "cpus=0.10", "--price", "h100=2")
    assert res.returncode == 0, res.stderr
    assert (
        "note: --price cpus: no point here is on that device, so it is not used (did you mean cpu? devices: "
        "cpu)" in res.stderr
    )
    assert (  # h100, SkyPilot's name (any case), prices both H100s
        "note: --price h100: it prices h100-pcie, h100-sxm, and no point here is on one, so it is not used "
        "(devices: cpu)" in res.stderr
    )
    # one name in two cases at one price: one price, no name left unused
    res = _cli("cost", str(runs[0]), "--price", "cpu=0.10", "--price", "CPU=0.10")
    assert res.returncode == 0 and "not used" not in res.stderr, res.stderr


def test_every_money_column_of_the_cost_table_is_in_dollars_and_cents() -> None:
    import pandas as pd
    from rich.console import Console

    from harness.tables import cost_table

    df = pd.DataFrame(
        {
            "config": ["h100"],
            "usd_per_1m_tokens": [5.5],
            "energy_usd_per_1m_tokens": [0.5],
            "total_usd_per_1m_tokens": [6.0],
            "output_tok_s": [36.8312],
        }
    )
    console = Console(record=True, width=200)
    console.print(cost_table(df, 1.0))
    row = next(line for line in console.export_text().splitlines() if "h100" in line)
    # tok/s with one decimal, as the points table and compare show it
    assert [c.strip() for c in row.split("│")[2:6]] == ["5.50", "0.500", "6.00", "36.8"]


def test_unused_price_overrides_are_named_with_the_devices_there_are() -> None:
    from harness.catalog.prices import OVERRIDE, unused_override_notes

    origins = {"h100": OVERRIDE, "cpu": OVERRIDE, "a100-80gb-sxm": "typical-gpu-cloud, seen 2026-Q1"}
    assert unused_override_notes(origins, ["cpu", "h100-sxm", "cpu"]) == [
        "--price h100: no point here is on that device, so it is not used (did you mean h100-sxm? devices: "
        "cpu, h100-sxm)"
    ]
    assert unused_override_notes(origins, ["h100", "cpu"]) == []  # a catalog price unused: no note


def test_a_skypilot_name_prices_every_catalog_device_it_can_be(tmp_path: Path) -> None:
    """`cloud launch --price H100=2.99` takes SkyPilot's names; `cost --price H100=2.99` had ignored the
    same price (a note only) and costed the run at the catalog's $2.49."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(
        Path(__file__).resolve().parents[2] / "results" / "evidence" / "20261125T114708Z-quickstart-cpu", run
    )
    m = json.loads((run / "manifest.json").read_text())
    # as recorded on an H100 machine: the quickstart's points are then that GPU's
    m["hardware"]["gpu"] = {
        "available": True,
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "catalog_key": "h100-sxm"}],
    }
    (run / "manifest.json").write_text(json.dumps(m))
    res = _cli("cost", str(run), "--price", "H100=2.99")
    assert res.returncode == 0, res.stderr
    assert "price h100-sxm: $2.99/h (--price H100)" in res.stderr
    rows = [line for line in res.stdout.splitlines() if "h100-sxm | llamacpp" in line]
    assert len(rows) == 3 and all("│          2.99 │" in r for r in rows)
    assert "no point here" not in res.stderr
    # a device's own key wins over the name that covers it
    res = _cli("cost", str(run), "--price", "H100=2.99", "--price", "h100-sxm=3.5")
    assert "price h100-sxm: $3.5/h (--price)" in res.stderr
    # a device key in capitals is that key, and wins too (RunPod's SkyPilot name H100-SXM is h100-sxm)
    res = _cli("cost", str(run), "--price", "H100=2.99", "--price", "H100-SXM=3.5")
    assert res.returncode == 0 and "price h100-sxm: $3.5/h (--price)" in res.stderr, res.stderr
    # one name, in two cases, at two prices: which was meant cannot be told (the last had won)
    res = _cli("cost", str(run), "--price", "h100=2.99", "--price", "H100=3.05")
    assert res.returncode == 2 and (
        "--price: 'h100=2.99' and 'H100=3.05' give one name two prices (give each name once)" in res.stderr
    ), res.stderr
    # ... at one price there is nothing to choose between, and no name goes unused
    res = _cli("cost", str(run), "--price", "h100-sxm=2.99", "--price", "H100-SXM=2.99")
    assert res.returncode == 0 and "price h100-sxm: $2.99/h (--price)" in res.stderr, res.stderr
    assert "not used" not in res.stderr


def test_the_older_flag_spellings_still_work() -> None:
    """`--tok-s`, `--j-per-token` and `--kwh` read as `--output-tok-s`, `--j-per-output-token` and
    `--usd-per-kwh`, so commands written before the units were named keep working."""
    old = _cli("cost", "--usd-per-hour", "2", "--tok-s", "100", "--j-per-token", "0.5", "--kwh", "0.2")
    new = _cli(
        "cost",
        "--usd-per-hour",
        "2",
        "--output-tok-s",
        "100",
        "--j-per-output-token",
        "0.5",
        "--usd-per-kwh",
        "0.2",
    )
    assert old.returncode == 0 and old.stdout == new.stdout and "$" in old.stdout


def test_cost_messages_name_the_flags_as_spelled_now(tmp_path: Path) -> None:
    res = _cli("cost", "--usd-per-hour", "1", "--output-tok-s", "10", "--usd-per-kwh", "0.2")
    assert res.returncode == 0 and "--usd-per-kwh needs --j-per-output-token" in " ".join(res.stdout.split())
    res = _cli("cost", "--usd-per-hour", "1e308", "--output-tok-s", "1e-308")
    assert res.returncode == 2 and "check --usd-per-hour, --output-tok-s" in res.stderr
    run = Path(__file__).resolve().parents[2] / "results/evidence/20261125T114708Z-quickstart-cpu"
    res = _cli("cost", str(run), "--output-tok-s", "5")
    assert res.returncode == 2 and "--output-tok-s" in res.stderr and "--tok-s " not in res.stderr
