"""Benchmark: one training step at the default study's own shape (config/config.yaml: 16 blocks of
width 32, 4 heads, context 32, batch 16, one thread), where per-operation overhead, not
arithmetic, sets the time. In one process, interleaved, repeated: (c) the plain PyTorch GPT of
baseline_gpt.py with the same AdamW; (a) lnstab's step as it is now (AdamW over all parameters
of a group at once, ``foreach``); (a0) lnstab's step with the per-parameter AdamW loop it used
before. The arithmetic limit: the model's FLOPs per step (6 N per token, and attention) at this
core's own measured matmul throughput. Writes benchmarks/default_shape.json, rendered by
`make bench` into docs/benchmarks.md.

    python benchmarks/default_shape.py [--repeats 7] [--steps 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(Path(__file__).parent)]

from bench import baseline_stepper, time_steps  # noqa: E402
from lnstab.config import load_config  # noqa: E402
from lnstab.train import Run  # noqa: E402

DEFAULT_SHAPE = ["model.n_layer=16", "model.d_model=32", "model.n_head=4", "model.block_size=32",
                 "train.batch_size=16", "train.lr=0.01", "train.weight_decay=0.1", "train.threads=1",
                 "probe.enabled=false"]


def matmul_gflops(n: int = 256, repeats: int = 50) -> float:
    """This core's float32 matmul throughput (one thread), the best of a few timings."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - t0) / repeats)
    return 2 * n ** 3 / best / 1e9


def loop_adamw(run: Run) -> torch.optim.AdamW:
    """The run's AdamW groups with the per-parameter loop (the implementation before foreach)."""
    groups = [{k: v for k, v in g.items() if k not in ("foreach", "fused")} for g in run.optimizer.param_groups]
    return torch.optim.AdamW(groups, foreach=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "default_shape.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(None, DEFAULT_SHAPE)
    with tempfile.TemporaryDirectory() as tmp:
        now, before = Run(cfg, Path(tmp) / "a", verbose=False), Run(load_config(None, DEFAULT_SHAPE), Path(tmp) / "b",
                                                                      verbose=False)
    before.optimizer = loop_adamw(before)
    plain = baseline_stepper(now)
    for f in (now.train_step, before.train_step, plain):  # warm up
        time_steps(f, 3)
    a, a0, c = [], [], []
    for _ in range(args.repeats):
        c.append(time_steps(plain, args.steps))
        a.append(time_steps(now.train_step, args.steps))
        a0.append(time_steps(before.train_step, args.steps))
    tokens = cfg.train.batch_size * cfg.model.block_size
    flops = now.model.flops_per_token() * tokens
    gflops = matmul_gflops()
    med = statistics.median
    result = {"shape": "16 blocks x 32, 4 heads, context 32, batch 16, 1 thread",
              "ms_step_a": 1e3 * med(a), "ms_step_a0": 1e3 * med(a0), "ms_step_c": 1e3 * med(c),
              "a_over_c": [x / y for x, y in zip(a, c)], "a_over_a0": [x / y for x, y in zip(a, a0)],
              "gflop_per_step": flops / 1e9, "matmul_gflops": gflops, "limit_ms": 1e3 * flops / (gflops * 1e9),
              "torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(),
              "repeats": args.repeats, "steps": args.steps}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
