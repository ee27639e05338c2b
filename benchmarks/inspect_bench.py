"""Benchmark: memory and time of `lnstab inspect` on randomly initialised GPT-2 checkpoints of
gpt2's and gpt2-xl's shapes (no download: transformers' config classes and save_pretrained),
4 sequences of 1,024 tokens, forward and backward in float32, each in a fresh process. Writes
benchmarks/inspect_results.json, which `make bench` (benchmarks/bench.py) renders into
docs/benchmarks.md.

    python benchmarks/inspect_bench.py                 # gpt2 and gpt2-xl shapes (about 15 minutes on 2 cores)
    python benchmarks/inspect_bench.py --shapes gpt2   # one shape
    python benchmarks/inspect_bench.py --local-check   # a 2-block shape, seconds
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# name -> (blocks, width, heads): GPT-2's published shapes
SHAPES = {"gpt2": (12, 768, 12), "gpt2-xl": (48, 1600, 25), "tiny": (2, 64, 4)}


def save_random_gpt2(folder: Path, n_layer: int, d: int, heads: int) -> float:
    """A randomly initialised GPT2LMHeadModel of that shape, saved as a checkpoint folder; the
    seconds it took."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    t0 = time.perf_counter()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=n_layer, n_embd=d, n_head=heads, n_positions=1024, vocab_size=50257)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return time.perf_counter() - t0


def inspect_in_fresh_process(folder: Path, out: Path, tokens: int, batch: int) -> dict:
    """`lnstab inspect` in its own process: its summary.json, the wall time around it, and the
    process's peak resident memory (the summary records it)."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "lnstab.cli", "inspect", str(folder), "--tokens", str(tokens),
                          "--batch", str(batch), "--out", str(out)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wall = time.perf_counter() - t0
    need = re.search(r"need about ([\d.]+) GB", res.stderr)
    estimate = {"estimate_gb": float(need.group(1))} if need else {}
    if res.returncode != 0:  # killed by a signal (the kernel's OOM killer): no line of its own
        last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
        error = last if last.startswith("lnstab") else f"killed by signal {-res.returncode}" if res.returncode < 0 \
            else f"exit {res.returncode}"
        return {"error": error, "wall_s": wall, **estimate}
    s = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, **estimate, "seconds": s["seconds"], "peak_rss_gib": s["peak_rss_bytes"] / 2**30,
            "n_params": s["n_params"], "bound_checks": s["bound_checks"], "bound_violations": s["bound_violations"],
            "max_ratio": s["max_ratio"], "finite": s["finite"], "stderr": res.stderr.strip().splitlines()[-3:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["gpt2", "gpt2-xl"], choices=list(SHAPES))
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--local-check", action="store_true", help="the tiny shape, 2 x 64 tokens, nothing written")
    ap.add_argument("--append", action="store_true", help="add the rows to those already in --out")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "inspect_results.json"))
    args = ap.parse_args()
    if args.local_check:
        args.shapes, args.tokens, args.batch = ["tiny"], 64, 2
    import torch

    rows = []
    for name in args.shapes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / name
            init_s = save_random_gpt2(folder, *SHAPES[name])
            batch = args.batch
            while batch:  # a refusal names the batch that fits: measure that one too
                row = {"shape": name, "blocks": SHAPES[name][0], "width": SHAPES[name][1], "tokens": args.tokens,
                       "batch": batch, "dtype": "float32", "init_and_save_s": init_s,
                       **inspect_in_fresh_process(folder, Path(tmp) / f"out{batch}", args.tokens, batch)}
                print(json.dumps(row), flush=True)
                rows.append(row)
                fits = re.search(r"try --batch (\d+)", row.get("error", ""))
                batch = int(fits.group(1)) if fits else 0
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
                         f"({torch.backends.cpu.get_cpu_capability()})", "rows": rows}
    if args.append and Path(args.out).exists():
        result["rows"] = json.loads(Path(args.out).read_text())["rows"] + rows
    if not args.local_check:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all("error" not in r or "try --batch" in r["error"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
