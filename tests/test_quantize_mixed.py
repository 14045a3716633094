from __future__ import annotations

from pathlib import Path

from quantize_helpers import context, op_counts

from packager.quantize import registry
from packager.quantize.mixed import _schedule


def test_unreachable_target_keeps_most_sensitive_nodes_in_float_within_limits(tmp_path: Path) -> None:
    ctx = context(
        tmp_path, "mixed", mixed={"target_mean_cosine": 1.0, "max_float_share": 0.5, "max_size_ratio": 1.0}
    )
    details = registry.get("mixed").run(ctx)
    floats = details["float_nodes"]
    assert details["target_reached"] is False
    assert 1 <= len(floats) <= 3  # 50% of 6 quantizable nodes
    ranked = [n["node"] for n in details["top_sensitivity"]]
    assert floats[0]["node"] == ranked[0]
    assert op_counts(ctx.output)["Conv"] == 5


def test_reachable_target_stops_with_no_float_nodes(tmp_path: Path) -> None:
    ctx = context(tmp_path, "mixed", mixed={"target_mean_cosine": 0.5})
    details = registry.get("mixed").run(ctx)
    assert details["target_reached"] is True and details["float_nodes"] == []


def test_size_budget_excludes_nodes_that_would_break_it(tmp_path: Path) -> None:
    ctx = context(
        tmp_path, "mixed", mixed={"target_mean_cosine": 1.0, "max_float_share": 1.0, "max_size_ratio": 0.01}
    )
    details = registry.get("mixed").run(ctx)
    assert details["float_nodes"] == []


def test_schedule_tries_single_nodes_first_then_grows() -> None:
    assert _schedule(20) == [1, 2, 3, 4, 6, 10, 18, 20]
