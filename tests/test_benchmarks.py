"""The GPU benchmark script runs (on the CPU, tiny shapes) and its determinism check can tell."""
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
