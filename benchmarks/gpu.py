"""GPU check and benchmark, for a machine with a CUDA GPU (no dataset needed: random tokens).

    python benchmarks/gpu.py --out benchmarks/gpu_results.json

1. Throughput of a GPT-2-small-shaped model (12 blocks x 768, 12 heads, context 1024, vocab
   50304, batch 16): tokens/s and model-FLOPs utilization for Pre-LN and Peri-LN in bf16, Pre-LN
   in fp32 with TF32, and Pre-LN in bf16 with torch.compile (warm-up steps excluded).
2. Probe cost at that shape: one plain probe and one with Jacobian norms (seconds, peak memory).
3. GPT-2 XL's shape (48 x 1600, 25 heads, context 1024) for a few steps in bf16 at micro-batch 4,
   with and without activation checkpointing: peak memory, tokens/s and MFU, next to what
   ``lnstab plan`` predicts for the same job (lnstab.plan).
4. Determinism on CUDA: a small run (probes, bounds, Jacobians, bf16) trained twice gives
   byte-identical metrics (timing columns aside), probes and bounds, with no bound violation.
``benchmarks/bench.py`` renders the JSON in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lnstab.bounds import bound_rows  # noqa: E402
from lnstab.config import load_config  # noqa: E402
from lnstab.probes import probe  # noqa: E402
from lnstab.hardware import mfu  # noqa: E402
from lnstab.plan import plan_job  # noqa: E402
from lnstab.train import TIMING_COLUMNS, Run, train  # noqa: E402

PROBED = ["model.placement=pre", "train.precision=bf16", "train.tf32=true"]  # also times the probes
GPT2_XL = ["model.n_layer=48", "model.d_model=1600", "model.n_head=25", "train.batch_size=4",
           "train.precision=bf16", "train.tf32=true"]  # the rest of GPT2_SMALL's shape is GPT-2 XL's too
GPT2_SMALL = ["model.n_layer=12", "model.d_model=768", "model.n_head=12", "model.block_size=1024",
              "model.vocab_size=50304", "model.bias=false", "train.batch_size=16", "train.device=cuda",
              "data.source=bin"]


def random_tokens(folder: Path, vocab: int = 50257, n: int = 2_000_000) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        rng.integers(0, vocab, n, dtype=np.uint16).tofile(folder / f"{split}.bin")
    return folder


DEVICE = "cuda"
LOCAL_CHECK: list[str] = []  # --local-check: tiny shapes on the CPU, to test this script without a GPU


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else None


def reset_peak():
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def guarded(fn, *args) -> dict:
    """Run one check; an exception (an op without a deterministic CUDA kernel, out of memory) is
    recorded as that check's result instead of ending the script."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        out = {"args": [str(a) for a in args], "error": f"{type(e).__name__}: {e}"[:500]}
        print(json.dumps(out), flush=True)
        return out


def throughput(data: Path, overrides: list[str], warmup: int = 5, steps: int = 20) -> dict:
    cfg = load_config(None, GPT2_SMALL + [f"data.dir={data}", f"train.device={DEVICE}"] + overrides + LOCAL_CHECK)
    reset_peak()
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, tmp, verbose=False)
        t0 = time.perf_counter()
        for _ in range(warmup):
            run.train_step()
        sync()
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            run.train_step()
        sync()
        dt = (time.perf_counter() - t0) / steps
        tok_s = cfg.train.batch_size * cfg.model.block_size / dt
        tflops = run.model.flops_per_token() * tok_s / 1e12
        row = {"config": " ".join(overrides), "ms_step": 1000 * dt, "tokens_per_s": tok_s,
               "model_tflops": tflops, "mfu": mfu(tflops, run.device, cfg.train.precision),
               "warmup_s": warm_s, "peak_mem_gib": peak_gib()}
        if overrides == PROBED:
            row["probe"] = probe_cost(run)
        # the planner's estimate of this job on one GPU, beside the measured peak
        row["plan_peak_gib"] = plan_job("bench", cfg, 1, 1e9, 1e9, 0.35, 1.0).peak_gb * 1e9 / 2**30
    print(json.dumps(row), flush=True)
    return row


def probe_cost(run: Run) -> dict:
    x, y = (t.to(run.device) for t in run.probe_batch)
    out = {}
    for name, iters in (("plain", 0), ("jacobian", run.cfg.probe.jacobian_iters)):
        sync()
        reset_peak()
        t0 = time.perf_counter()
        rows = bound_rows(run.model, probe(run.model, x, y, iters, run.cfg.probe.jacobian_tol))
        sync()
        out[name] = {"s": time.perf_counter() - t0, "peak_mem_gib": peak_gib(),
                     "violations": sum(r["violation"] for r in rows)}
    return out


def determinism(data: Path, precision: str) -> dict:
    overrides = ["data.source=bin", f"data.dir={data}", "model.vocab_size=50304", "model.n_layer=4", "model.d_model=128", "model.block_size=128", "train.batch_size=8",
                 "train.steps=30", "probe.interval=10", f"train.device={DEVICE}", f"train.precision={precision}",
                 "train.eval_interval=10", "train.ckpt_interval=10"] + LOCAL_CHECK[:4]
    with tempfile.TemporaryDirectory() as tmp:
        summaries = [train(load_config(None, overrides), Path(tmp) / f"r{i}", verbose=False) for i in range(2)]
        same = {}
        for f in ("metrics.csv", "probes.csv", "bounds.csv"):
            a, b = (pd.read_csv(Path(tmp) / f"r{i}" / f) for i in range(2))
            a, b = (d.drop(columns=[c for c in TIMING_COLUMNS if c in d.columns]) for d in (a, b))
            same[f] = a.equals(b)
    out = {"precision": precision, "identical": same, "final_val_loss": summaries[0]["final_val_loss"],
           "bound_violations": summaries[0]["bound_violations"]}
    print(json.dumps(out), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_results.json"))
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    ap.add_argument("--only-determinism", action="store_true", help="skip the throughput rows")
    ap.add_argument("--local-check", action="store_true", help="tiny shapes on the CPU (tests this script)")
    args = ap.parse_args()
    global DEVICE
    if args.local_check:
        DEVICE = "cpu"
        LOCAL_CHECK.extend(["model.n_layer=2", "model.d_model=32", "model.n_head=2", "model.block_size=32",
                            "train.batch_size=4", "probe.batch_size=2", "train.precision=fp32"])
    elif not torch.cuda.is_available():
        sys.exit("no CUDA GPU (use --local-check to test this script on the CPU)")
    res = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (local check)",
           "torch": torch.__version__, "determinism": [], "throughput": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = random_tokens(Path(tmp))
        res["determinism"] = [guarded(determinism, data, "bf16"), guarded(determinism, data, "fp32")]
        configs = [PROBED,
                   ["model.placement=peri", "train.precision=bf16", "train.tf32=true"],
                   ["model.placement=pre", "train.precision=fp32", "train.tf32=true"]]
        if not args.no_compile:
            configs.append(["model.placement=pre", "train.precision=bf16", "train.tf32=true", "train.compile=true"])
        configs += [GPT2_XL + ["train.activation_checkpointing=false"],
                    GPT2_XL + ["train.activation_checkpointing=true"]]
        if args.only_determinism:
            configs = []
        for overrides in configs:
            res["throughput"].append(guarded(throughput, data, overrides))
            Path(args.out).write_text(json.dumps(res, indent=1) + "\n")  # keep what is done
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
