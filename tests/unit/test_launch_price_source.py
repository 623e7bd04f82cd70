"""Where a launch's price comes from, as the launch prints it: each catalog device the SkyPilot name can
be, with the provider and when its price was seen."""

from __future__ import annotations

from harness.cloud import cost


def test_a_shared_name_lists_the_price_catalog_rows_of_every_card_it_can_be() -> None:
    h100 = cost.lookup_price("H100")
    assert h100 is not None
    assert h100.source == (
        "prices.yaml: h100-pcie (lambda-1x, seen 2026-05-07), h100-sxm (typical-gpu-cloud, seen 2026-Q1)"
    )
