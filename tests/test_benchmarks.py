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


def test_docs_benchmarks_is_rendered_from_the_kept_results(tmp_path):
    """docs/benchmarks.md is exactly what `bench.py --render-only` makes of the committed result
    files: no number in it was typed by hand or left behind by a newer measurement."""
    out = tmp_path / "benchmarks.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--render-only", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.read_text() == (ROOT / "docs" / "benchmarks.md").read_text()


def test_readme_quotes_the_measured_inspection():
    """The README's numbers for GPT-2 XL's shape are those of benchmarks/inspect_results.json."""
    import re

    rows = json.loads((ROOT / "benchmarks" / "inspect_results.json").read_text())["rows"]
    (xl,) = [r for r in rows if r["shape"] == "gpt2-xl" and "error" not in r]
    readme = " ".join((ROOT / "README.md").read_text().split())  # lines joined
    quoted = re.search(r"GPT-2 XL's shape, (\d) x ([\d,]+) tokens in float32: peak ([\d.]+) GiB in (\d+) min (\d+) s",
                       readme)
    assert quoted, "the README no longer quotes the gpt2-xl inspection"
    batch, tokens, peak, minutes, seconds = quoted.groups()
    assert (int(batch), int(tokens.replace(",", ""))) == (xl["batch"], xl["tokens"])
    assert peak == f"{xl['peak_rss_gib']:.1f}" and (int(minutes), int(seconds)) == divmod(round(xl["wall_s"]), 60)
