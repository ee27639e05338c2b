"""The benchmark scripts run on the CPU at tiny shapes: the GPU script (its determinism check can
tell) and the inspection of a random GPT-2 checkpoint."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_local_check(tmp_path):
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--local-check", "--only-determinism",
                    "--out", str(out)], check=True, capture_output=True, text=True, timeout=300)
    res = json.loads(out.read_text())
    by_precision = {d.get("precision", d.get("args", [""])[-1]): d for d in res["determinism"]}
    fp32 = by_precision["fp32"]
    assert fp32["identical"] == {"metrics.csv": True, "probes.csv": True, "bounds.csv": True}
    assert fp32["bound_violations"] == 0
    # bf16 autocast is refused on the CPU, and the script records that instead of stopping
    assert "bf16 autocast is for GPUs" in by_precision["bf16"]["error"]


@pytest.mark.slow
def test_inspect_benchmark_local_check():
    """benchmarks/inspect_bench.py saves a random GPT-2 checkpoint and inspects it in a fresh
    process (a 2-block shape here; gpt2's and gpt2-xl's in make bench)."""
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "inspect_bench.py"), "--local-check"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert row["shape"] == "tiny" and row["finite"] and row["bound_violations"] == 0 and row["bound_checks"] > 0
    assert 0 < row["peak_rss_gib"] < 8 and row["seconds"] <= row["wall_s"]
