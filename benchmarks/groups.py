"""Benchmark: training groups (lnstab.groups) against separate runs, per run-step, at the default
study's width (32, 4 heads, context 32, batch 16, one thread) and 4 and 16 blocks.

In one process, interleaved, repeated: (s) one run's step as lnstab.train trains it alone
(forward, backward, clip_grad_norm_, foreach AdamW); (g) the step of a group of N runs
(one stacked forward and backward, per-run clipping, the stacked AdamW) divided by N. Ratios
(g)/(s) below 1 mean a run-step costs less in a group. Writes benchmarks/groups.json, rendered by
`make bench` into docs/benchmarks.md.

    python benchmarks/groups.py [--repeats 5] [--steps 10] [--sizes 1 2 4 8 16]

Where a stacked step's time goes (torch.profiler, 8 runs of 16 blocks, AMD EPYC, AVX512): CPU
flash attention forward and backward 39%, batched matrix products 31%, GELU and its gradient 10%,
LayerNorm 5%; copies, fills and the rest of the per-operation work about 15%. Stacking removes
per-operation overhead, not that per-element work, which grows with the number of runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lnstab.config import load_config  # noqa: E402
from lnstab.groups import StackedAdamW, clip_per_run  # noqa: E402
from lnstab.model import GPT  # noqa: E402
from lnstab.train import make_optimizer  # noqa: E402

VOCAB = 65  # the default study's character vocabulary


class _Member:
    """What the stacked step reads of a run: its config, model and optimizer."""

    def __init__(self, cfg, seed):
        torch.manual_seed(seed)
        self.cfg, self.model = cfg, GPT(cfg.model)
        self.optimizer = make_optimizer(self.model, cfg, torch.device("cpu"))


def config(n_layer, placement):
    return load_config(None, [f"model.n_layer={n_layer}", "model.d_model=32", "model.n_head=4",
                              "model.block_size=32", f"model.vocab_size={VOCAB}", f"model.placement={placement}",
                              "train.batch_size=16", "train.threads=1"])


def single_stepper(cfg):
    run = _Member(cfg, 0)
    x, y = torch.randint(VOCAB, (16, 32)), torch.randint(VOCAB, (16, 32))

    def step():
        run.optimizer.zero_grad(set_to_none=True)
        _, loss = run.model(x, y)
        loss.backward()
        loss.item()
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.train.grad_clip)
        run.optimizer.step()
    return step


def group_stepper(cfg, n):
    members = [_Member(cfg, seed) for seed in range(n)]
    stacked = GPT.stack([m.model for m in members])
    opt = StackedAdamW(stacked, members)
    x, y = torch.randint(VOCAB, (n, 16, 32)), torch.randint(VOCAB, (n, 16, 32))

    def step():
        opt.zero_grad()
        _, losses = stacked(x, y)
        losses.sum().backward()
        losses.tolist()
        clip_per_run(opt.params, members)
        opt.step([cfg.train.lr] * n)
    return step


def cpu_name() -> str:
    """The processor's model name (Linux), else what platform says."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def seconds_per_step(step, steps):
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "groups.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for n_layer in args.depths:
        for placement in ("pre", "peri"):
            cfg = config(n_layer, placement)
            single = single_stepper(cfg)
            groups = {n: group_stepper(cfg, n) for n in args.sizes}
            ratios = {n: [] for n in args.sizes}
            singles = []
            for _ in range(args.repeats):
                for n, step in groups.items():  # (s), (g), (s) around each group size
                    s0 = seconds_per_step(single, args.steps)
                    g = seconds_per_step(step, max(2, args.steps // n)) / n
                    s1 = seconds_per_step(single, args.steps)
                    ratios[n].append(g / ((s0 + s1) / 2))
                    singles += [s0, s1]
            rows.append({"n_layer": n_layer, "placement": placement, "ms_single": 1000 * statistics.median(singles),
                         "ratios": {str(n): r for n, r in ratios.items()}})
            print(json.dumps(rows[-1]), flush=True)
    out = {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(),
           "machine": f"{platform.machine()}, {cpu_name()}",
           "repeats": args.repeats, "steps": args.steps, "rows": rows}
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
