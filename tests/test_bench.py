"""The benchmark machinery on tiny cases (the real grid: experiments/bench_ntk.py)."""

import csv
import importlib.util
import pathlib

import pytest

from ntknas import bench


def test_bench_measures_every_method_and_reports_ratios(monkeypatch, tmp_path):
    tiny = [bench.fcn_case(16, 4, n=2, depth=3), bench.cnn_case(3, n=2, width=4, depth=1, size=6)]
    monkeypatch.setattr(bench, "cases", lambda quick, match=None: tiny)
    rows = bench.main(quick=True, out=str(tmp_path / "b.csv"), repeats=2)
    assert {(r["case"], r["method"]) for r in rows} == {
        (c.name, m) for c in tiny for m in bench.METHODS
    }
    for r in rows:
        assert r["status"] == "ok" and r["seconds"] > 0 and r["peak_bytes"] > 0
        assert r["flops"] > 0 and r["tflops_per_s"] > 0
        assert r["auto_pick"] in bench.METHODS and r["auto_slowdown"] >= 1.0
    jc = [r for r in rows if r["method"] == "jacobian_contraction"]
    assert all(abs(r["speedup_vs_jc"] - 1.0) < 1e-12 for r in jc)
    text = bench.table(rows)
    assert all(c.name in text for c in tiny) and "SD/JC" in text
    with open(tmp_path / "b.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)


def test_bench_match_picks_cases_by_name():
    chosen = bench.cases(True, "cnn")
    assert chosen and all("cnn" in c.name for c in chosen)
    assert len(chosen) < len(bench.cases(True))
    with pytest.raises(ValueError, match="no benchmark case matches 'resnet'"):
        bench.cases(True, "resnet")


def test_bench_skips_cases_over_the_memory_limit():
    c = bench.fcn_case(16, 4, n=2, depth=3)
    r = bench.measure(c, "jacobian_contraction", repeats=1, timeout=10, mem_limit=1.0)
    assert r["status"] == "skipped: memory" and "seconds" not in r


def test_gpu_check_prints_every_method_with_time_memory_and_rate(monkeypatch, capsys):
    path = pathlib.Path(__file__).parents[1] / "experiments" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    tiny = [bench.fcn_case(16, 4, n=2, depth=3)]
    monkeypatch.setattr(gpu_check, "cases", lambda quick: tiny)
    assert gpu_check.main(["--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "auto ->" in out
    for m in bench.METHODS:
        line = next(line for line in out.splitlines() if m in line and "compile" in line)
        assert "peak" in line and "TFLOP/s" in line
