"""`beacon bench e2e` writes its tables and both plots, and without matplotlib still writes the tables and says
how to get the plots."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from beacon.bench.bare.compare import bare_summary
from beacon.bench.e2e import RunResult
from beacon.bench.e2e_bench import write_report


def runs() -> list[RunResult]:
    out = []
    for kind, name, scale in (("kafka", "kafka baseline at 10/s", 1.0), ("stack", "stack at 10/s", 4.0),
                              ("bare", "bare at 10/s", 2.0)):
        send_times = [1000.0 + i / 10 for i in range(20)]
        latencies = [scale * (0.005 + i / 2000) for i in range(20)]
        out.append(RunResult(name, 10, 2, sent=20, latencies=latencies, send_times=send_times,
                             reply_times=[t + x for t, x in zip(send_times, latencies, strict=True)], kind=kind))
    return out


def test_the_tables_and_both_plots_are_written_and_named(tmp_path: Path) -> None:
    said = write_report(runs(), tmp_path / "bench" / "e2e")
    table = (tmp_path / "bench" / "e2e.md").read_text()
    assert "| stack at 10/s | bare at 10/s |" in table and "| stack at 10/s | kafka baseline at 10/s |" in table
    for name in ("e2e.png", "e2e-percentiles.png"):
        assert (tmp_path / "bench" / name).read_bytes().startswith(b"\x89PNG")
        assert str(tmp_path / "bench" / name) in said[0]


def test_without_matplotlib_the_tables_are_written_and_the_operator_told_how_to_get_the_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets when it is not installed
    said = write_report(runs(), tmp_path / "e2e")
    rows = (tmp_path / "e2e.md").read_text().splitlines()
    ratio = next(row for row in rows if row.startswith("| stack at 10/s | bare at 10/s |"))
    assert ratio.endswith("| 2.00x | 2.00x | n/a |")  # p50, p99; no CPU figures in these runs
    assert said == [f"table: {tmp_path / 'e2e.md'}; no plots: matplotlib is not installed (it is in the bench "
                    "extra: pip install -e '.[bench]', or re-run ./scripts/setup)"]
    assert not (tmp_path / "e2e.png").exists()


def test_the_summary_line_gives_beacon_as_a_multiple_of_the_bare_topology() -> None:
    line = bare_summary(runs())
    assert line is not None and "at 10/s p50 2.00x, p99 2.00x, CPU per message n/a" in line
    assert bare_summary([r for r in runs() if r.kind != "bare"]) is None
