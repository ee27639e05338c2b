"""Benchmark: training throughput of lnstab against a plain PyTorch GPT, probe cost, peak memory,
end-to-end workflow times and the DAG build time of a 1,000-run grid. Writes docs/benchmarks.md.

    make bench                           # everything (about 30 minutes on 2 cores)
    python benchmarks/bench.py --quick   # throughput and memory only, fewer repeats
    python benchmarks/bench.py --only default_shape inspect   # re-measure some sections, render all

Each section's measurements are kept in benchmarks/*.json (cpu_results.json for throughput,
memory and workflow; default_shape.json, breakdown.json, inspect_results.json, gpu_results.json),
and the document is rendered from those files: a section measured on its own keeps the others.

Every run uses lnstab's default config (`lnstab show-config`) with only the shape changed.
(a) lnstab, probes off; (b) lnstab with probes at the default cadence; (c) the baseline in
baseline_gpt.py, doing the same work per step. Each repeat times, in one process and in this
order, (c), (a), (c), one plain probe and one probe with Jacobian norms; (a) is divided by the
mean of the two (c) around it, and (b) per step is that repeat's (a) plus its probe times spread
over the default run: (n_plain * plain + n_jacobian * jacobian) / steps.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))

from baseline_gpt import PlainGPT  # noqa: E402
from lnstab.bounds import bound_rows  # noqa: E402
from lnstab.config import RunConfig, load_config  # noqa: E402
from lnstab.data import get_batch  # noqa: E402
from lnstab.probes import probe  # noqa: E402
from lnstab.train import Run, lr_at, probe_steps  # noqa: E402

SHAPES = [(6, 64, 4), (12, 128, 4), (24, 128, 4), (48, 256, 8)]  # n_layer, d_model, n_head
DEFAULTS = RunConfig()


def shape_config(n_layer, d, heads, probes=False):
    return load_config(None, [f"model.n_layer={n_layer}", f"model.d_model={d}", f"model.n_head={heads}",
                              f"probe.enabled={str(probes).lower()}", "train.threads=1"])


def probe_schedule(cfg: RunConfig) -> tuple[int, int]:
    """(plain probes, probes with Jacobian norms) in one default run."""
    n = len(probe_steps(cfg))
    return (0, n) if cfg.probe.jacobian_every_probe else (n - 1, 1)


def time_steps(step, n) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def baseline_stepper(run: Run):
    """The same work per step as Run.train_step, on the plain model: lr, batch, AdamW, clipping."""
    cfg = run.cfg
    torch.manual_seed(0)
    model = PlainGPT(cfg.model.vocab_size, cfg.model.block_size, cfg.model.d_model, cfg.model.n_head,
                     cfg.model.n_layer)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.train.weight_decay},
                             {"params": other, "weight_decay": 0.0}],
                            lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2),
                            foreach=run.optimizer.defaults.get("foreach"))  # the same AdamW implementation
    gen = torch.Generator().manual_seed(0)
    state = {"step": 0}

    def step():
        for g in opt.param_groups:
            g["lr"] = lr_at(state["step"], cfg)
        x, y = get_batch(run.corpus.train, cfg.train.batch_size, cfg.model.block_size, gen)
        loss = model(x, y)
        loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip).item()
        opt.step()
        state["step"] += 1

    return step


def probe_time(run: Run, jacobian_iters: int) -> float:
    """Seconds for one probe plus its bound rows, as lnstab.measure.probe_now does them."""
    x, y = run.probe_batch
    t0 = time.perf_counter()
    bound_rows(run.model, probe(run.model, x, y, jacobian_iters, run.cfg.probe.jacobian_tol))
    return time.perf_counter() - t0


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def throughput(repeats: int, steps: int) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    for n_layer, d, heads in SHAPES:
        with tempfile.TemporaryDirectory() as tmp:
            run = Run(shape_config(n_layer, d, heads), tmp, verbose=False)
        cfg = run.cfg
        n_plain, n_jac = probe_schedule(cfg)
        base = baseline_stepper(run)
        time_steps(run.train_step, 2), time_steps(base, 2), probe_time(run, 0)  # warm up
        n = max(2, steps // (1 + n_layer // 12))  # fewer steps per repeat for the deep shapes
        ratio_a, ratio_b, times_a, times_c, plain, jac = [], [], [], [], [], []
        for _ in range(repeats):
            c1 = time_steps(base, n)
            a = time_steps(run.train_step, n)
            c2 = time_steps(base, n)
            p, j = probe_time(run, 0), probe_time(run, cfg.probe.jacobian_iters)
            b = a + (n_plain * p + n_jac * j) / cfg.train.steps
            ratio_a.append(a / ((c1 + c2) / 2))
            ratio_b.append(b / a)
            times_a.append(a)
            times_c += [c1, c2]
            plain.append(p)
            jac.append(j)
        tokens = cfg.train.batch_size * cfg.model.block_size
        rows.append({
            "shape": f"L{n_layer} d{d}", "params_M": run.model.num_params() / 1e6,
            "ms_step_a": 1000 * statistics.median(times_a), "ms_step_c": 1000 * statistics.median(times_c),
            "tok_s_a": tokens / statistics.median(times_a), "tok_s_c": tokens / statistics.median(times_c),
            "a_over_c": spread(ratio_a), "b_over_a": spread(ratio_b),
            "probe_ms": 1000 * statistics.median(plain), "probe_jac_ms": 1000 * statistics.median(jac),
        })
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def peak_memory(shape) -> float:
    """Peak resident memory (MiB, VmHWM: ru_maxrss would carry the parent's over the exec) of a
    fresh process doing 5 training steps plus a full probe."""
    code = (f"import sys, tempfile; sys.path[:0] = [{str(ROOT / 'src')!r}, {str(Path(__file__).parent)!r}];"
            "from bench import shape_config; from lnstab.train import Run; from lnstab.measure import probe_now;"
            f"run = Run(shape_config(*{shape!r}, probes=True), tempfile.mkdtemp(), verbose=False);"
            "[run.train_step() for _ in range(5)]; probe_now(run);"
            "print([int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def dag_build_time(n_runs_target=1000) -> tuple[int, float]:
    sweeps = [{"placement": ["pre", "peri", "post", "none"], "n_layer": [3, 6, 12, 24, 48],
               "dt": [1.0, 0.5, 0.25, 0.1, 0.05], "weight_decay": [0.0, 0.1], "seed": [0, 1, 2, 3, 4]}]
    n = math.prod(len(v) for v in sweeps[0].values())
    assert n == n_runs_target
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "big.yaml"
        cfg.write_text(json.dumps({"results": f"{tmp}/results", "figures": f"{tmp}/figures", "sweeps": sweeps}))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "all", "--configfile", str(cfg)],
                       cwd=ROOT, check=True, capture_output=True)
        return n, time.perf_counter() - t0


def workflow_time(configfile: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "cfg.json"
        import yaml

        c = yaml.safe_load((ROOT / configfile).read_text())
        c.update(results=f"{tmp}/results", figures=f"{tmp}/figures")
        cfg.write_text(json.dumps(c))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", "all", "--quiet", "all", "--configfile", str(cfg)],
                       cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - t0


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()}), 1 thread per run, no GPU"
            if not torch.cuda.is_available() else f"{torch.cuda.get_device_name()}, torch {torch.__version__}")


def kept(results: Path) -> dict | None:
    """A section's kept measurements (benchmarks/*.json), or None where it was never measured."""
    return json.loads(results.read_text()) if results.exists() else None


def not_measured(results: Path, how: str) -> list[str]:
    """What a section says instead of numbers: which file is missing and how to make it."""
    return [f"Not measured: no `benchmarks/{results.name}` ({how})."]


def gpu_section(results: Path) -> list[str]:
    """The GPU table from the JSON that `python benchmarks/gpu.py` writes on a GPU machine."""
    if (r := kept(results)) is None:
        return not_measured(results, "run `python benchmarks/gpu.py` on a GPU")
    lines = [f"Measured by `python benchmarks/gpu.py` (results: `benchmarks/gpu_results.json`) on one "
             f"{r['device']}, torch {r['torch']}. GPT-2-small shape: 12 blocks x 768, 12 heads, context 1024,",
             "vocab 50304, no biases, batch 16 x 1024 tokens, deterministic algorithms on (the default);",
             "20 timed steps after 5 warm-up steps. MFU: model FLOPs (6N + attention per token) over the",
             "dense bf16 peak (989 TFLOP/s), or the TF32 peak (494) for fp32 with TF32.", "",
             "| config | ms/step | tokens/s | model TFLOP/s | MFU | peak memory (GiB) | warm-up (s) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for t in r["throughput"]:
        if "error" in t:
            lines.append(f"| {' '.join(t['args'][1:])} | failed: {t['error']} | | | | | |")
            continue
        mfu = f"{100 * t['mfu']:.1f}%" if t["mfu"] else "n/a"
        lines.append(f"| {t['config']} | {t['ms_step']:.1f} | {t['tokens_per_s']:,.0f} | {t['model_tflops']:.0f} | "
                     f"{mfu} | {t['peak_mem_gib']:.1f} | {t['warmup_s']:.1f} |")
    probed = next((t for t in r["throughput"] if "probe" in t), None)
    if probed:
        p, j, step_s = probed["probe"]["plain"], probed["probe"]["jacobian"], probed["ms_step"] / 1000
        lines += ["", f"Probes on that model (probe batch 8 x 1024, float32): a plain probe {p['s']:.2f} s "
                  f"({p['s'] / step_s:.0f} bf16 steps), one with Jacobian norms {j['s']:.2f} s ({j['s'] / step_s:.0f} "
                  f"steps, peak {j['peak_mem_gib']:.0f} GiB); {p['violations'] + j['violations']} bound violations. "
                  "With a probe every 2000 steps (config/paper.yaml), plain probes cost "
                  f"{100 * p['s'] / (2000 * step_s):.2f}% of this model's training time."]
    lines += ["", "Determinism on CUDA: a 4-block run (30 steps; probes, bounds and Jacobian norms) trained twice:"]
    for d in r["determinism"]:
        if "error" in d:
            lines.append(f"- {d['args'][-1]}: failed: {d['error']}")
        else:
            same = all(d["identical"].values())
            lines.append(f"- {d['precision']}: metrics, probes and bounds {'byte-identical' if same else 'DIFFERENT'} "
                         f"({', '.join(k for k, v in d['identical'].items() if v)} equal), "
                         f"{d['bound_violations']} bound violations")
    return lines


def default_shape_section(results: Path) -> list[str]:
    """The step at the default study's shape, from benchmarks/default_shape.json."""
    if (r := kept(results)) is None:
        return not_measured(results, "run `python benchmarks/default_shape.py`")

    def ratio(values):
        return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"

    return [f"Measured by `python benchmarks/default_shape.py` (torch {r['torch']}, {r['cpu']}): {r['shape']}, "
            f"{r['repeats']} interleaved repeats of {r['steps']} steps in one process; median [min, max].", "",
            "| (a) lnstab ms/step | (c) plain GPT ms/step | (a)/(c) | (a0) before: per-parameter AdamW ms/step | (a)/(a0) | arithmetic limit ms/step |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| {r['ms_step_a']:.1f} | {r['ms_step_c']:.1f} | {ratio(r['a_over_c'])} | {r['ms_step_a0']:.1f} | "
            f"{ratio(r['a_over_a0'])} | {r['limit_ms']:.1f} ({r['gflop_per_step']:.2f} GFLOP at "
            f"{r['matmul_gflops']:.0f} GFLOP/s, this core's matmul) |", "",
            "At this width a step is far from the arithmetic limit: the time goes to per-operation overhead "
            "(about 20 small kernels per sub-layer), which is why AdamW over whole groups (`foreach`, the same "
            "arithmetic in the same order: byte-identical tables) saves time here."]


def breakdown_section(results: Path) -> list[str]:
    """Where the default study's time goes, before and after a change measured in one sitting, from
    benchmarks/breakdown.json (benchmarks/breakdown.py)."""
    if (runs := kept(results)) is None:
        return not_measured(results, "run the workflow, then `python benchmarks/breakdown.py`")
    sides = [k for k in ("before", "after") if k in runs]
    lines = []
    for side in sides:
        r = runs[side]
        lines.append(f"- {side}: commit {r.get('commit') or 'not recorded'}, Snakemake log `{r['log']}` "
                     f"({r['note'] or 'timed alone'}): makespan {r['makespan'] / 60:.1f} min, "
                     f"{sum(v['jobs'] for v in r['rules'].values())} jobs, {r['training']['runs']} training runs.")
    if len(sides) == 2:
        b, a = runs["before"]["makespan"], runs["after"]["makespan"]
        per_run = {k: runs[k]["training"]["train_s"] / runs[k]["training"]["runs"] for k in sides}
        lines.append(f"- after / before: {a / b:.2f} of the time, {a / b * runs['before']['training']['runs'] / runs['after']['training']['runs']:.2f} "
                     f"of the time per training run; the training steps of a run (its own timer) {per_run['before']:.1f} s "
                     f"-> {per_run['after']:.1f} s, {per_run['after'] / per_run['before']:.2f}.")
    lines += ["", "The jobs' wall seconds per rule (two jobs run at once on 2 cores, so they add up to about twice "
              "the makespan; a training group's job counts under `train`):", "",
              "| rule | " + " | ".join(f"jobs ({s}) | job seconds ({s}) | share ({s})" for s in sides) + " |",
              "| --- |" + " --- | --- | --- |" * len(sides)]
    totals = {s: sum(v["seconds"] for v in runs[s]["rules"].values()) for s in sides}
    names = sorted({n for s in sides for n in runs[s]["rules"]},
                   key=lambda n: (-max(runs[s]["rules"].get(n, {"seconds": 0})["seconds"] for s in sides), n))
    for name in names:
        cells = []
        for s in sides:
            v = runs[s]["rules"].get(name)
            cells.append(f"{v['jobs']} | {v['seconds']:.0f} | {100 * v['seconds'] / totals[s]:.1f}%" if v else "- | - | -")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for s in sides:
        r = runs[s]
        t, jobs = r["training"], sum(v["jobs"] for v in r["rules"].values())
        lines.append(f"{s.capitalize()}: inside the {t['runs']} training runs (their own timers, summary.json; a "
                     f"group's step shared equally among its runs): training steps {t['train_s']:.0f} s, evaluation "
                     f"{t['eval_s']:.0f} s, probes with bound rows and Jacobian estimates {t['probe_s']:.0f} s "
                     f"({100 * t['probe_s'] / max(t['train_s'], 1e-9):.1f}% of the steps' time). Start-up of one job "
                     f"(a fresh Python importing torch and lnstab): {r['start_up_s']:.1f} s, "
                     f"{r['start_up_s'] * jobs:.0f} s over the {jobs} jobs.")
    return lines


def groups_section(results: Path) -> list[str]:
    """Training groups against separate runs, from benchmarks/groups.json (benchmarks/groups.py)."""
    if (r := kept(results)) is None:
        return not_measured(results, "run `python benchmarks/groups.py`")
    sizes = list(r["rows"][0]["ratios"])
    lines = [f"Measured by `python benchmarks/groups.py` (torch {r['torch']}, {r['cpu']}, {r['machine']}): width 32, "
             f"4 heads, context 32, batch 16, 1 thread; one step of a training group of N runs (stacked forward and "
             f"backward, per-run clipping, the stacked AdamW) divided by N, over one run's step alone (lnstab.train: "
             f"forward, backward, clip_grad_norm_, foreach AdamW), interleaved in one process, {r['repeats']} repeats; "
             "median [min, max]. Below 1: a run-step costs less in a group.", "",
             "| blocks | placement | ms per step alone | " + " | ".join(f"N = {n}" for n in sizes) + " |",
             "| --- | --- | --- |" + " --- |" * len(sizes)]
    for row in r["rows"]:
        cells = [f"{statistics.median(v):.2f} [{min(v):.2f}, {max(v):.2f}]" for v in row["ratios"].values()]
        lines.append(f"| {row['n_layer']} | {row['placement']} | {row['ms_single']:.1f} | " + " | ".join(cells) + " |")
    deep = [statistics.median(row["ratios"]["8"]) for row in r["rows"] if row["n_layer"] == 16 and "8" in row["ratios"]]
    if deep:
        met = max(deep) <= GROUP_TARGET
        lines += ["", f"Target: a group of 8 at 16 blocks at most {GROUP_TARGET} of separate runs per run-step; "
                  f"measured {', '.join(f'{d:.2f}' for d in deep)}: {'met' if met else 'not met'}."
                  + ("" if met else " What stacking removes is per-operation overhead; what is left is per-element "
                     "work that grows with the runs (CPU flash attention at head size 8, the matrix products, GELU: "
                     "the profile in benchmarks/groups.py's docstring).")]
    return lines


GROUP_TARGET = 0.55  # issue 31: a group of 8 at 16 blocks, per run-step, against separate runs


def inspect_section(results: Path) -> list[str]:
    """The table of `lnstab inspect` at GPT-2's shapes, from benchmarks/inspect_results.json."""
    if (r := kept(results)) is None:
        return not_measured(results, "run `python benchmarks/inspect_bench.py`")
    lines = [f"Measured by `python benchmarks/inspect_bench.py` ({r['machine']}): `lnstab inspect` on a randomly "
             "initialised GPT-2 checkpoint of each shape (saved by transformers' `save_pretrained`; no download), "
             "in a fresh process: loading, one forward and backward pass of the language-model loss with every "
             "probe, and the bound rows (float32; Jacobian estimates off).", "",
             "| shape | parameters (M) | sequences x tokens | dtype | memory estimated before (GB) | wall (s) | peak RSS (GiB) | bound checks | violations | largest ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in r["rows"]:
        head = f"| {t['shape']} ({t['blocks']} x {t['width']}) |"
        est = f"{t['estimate_gb']:.1f}" if "estimate_gb" in t else ""
        if "error" in t:
            what = "died: " if t["error"].startswith("killed") else "refused before the pass: "
            lines.append(f"{head} | {t['batch']} x {t['tokens']} | {t['dtype']} | {est} | {what}"
                         f"{t['error'].replace('|', '/')} | | | | |")
            continue
        lines.append(f"{head} {t['n_params'] / 1e6:,.0f} | {t['batch']} x {t['tokens']} | {t['dtype']} | {est} | "
                     f"{t['wall_s']:.0f} | {t['peak_rss_gib']:.1f} | {t['bound_checks']} | {t['bound_violations']} | "
                     f"{t['max_ratio']:.3g} |")
    measured = [t for t in r["rows"] if "error" not in t and "estimate_gb" in t]
    over = [t["estimate_gb"] / (t["peak_rss_gib"] * 2**30 / 1e9) for t in measured]
    lines += ["", "How the pass fits: a GPT-2 checkpoint is read one tensor at a time into a model built without "
              "memory (one copy of the weights), and the backward pass goes one sub-layer at a time from the "
              "stored stream (`lnstab.probes.backward_by_sublayer`: every row bit-identical to one backward pass "
              "of the whole model, tests/test_probes.py), reducing each parameter's gradient to its norm as it "
              "is made. The estimate printed before the pass (`lnstab.pretrained.bytes_needed`: interpreter, "
              "weights, stream, logits, one block's activations) over the measured peak: "
              + ", ".join(f"{t['shape']} {v:.2f}" for t, v in zip(measured, over))
              + (" (the estimate is conservative at every measured shape)." if over and min(over) >= 1 else
                 " (below 1: the estimate is low there).")]
    return lines


def write_doc(path: Path, cpu: dict):
    rows, memory = cpu.get("throughput", []), cpu.get("memory", [])
    dag, e2e = cpu.get("dag", [0, float("nan")]), cpu.get("workflow", [])
    c = DEFAULTS
    n_plain, n_jac = probe_schedule(c)

    def ratio(r):
        return f"{r['median']:.3f} [{r['min']:.3f}, {r['max']:.3f}]"

    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`benchmarks/bench.py`); do not edit by hand.",
        "",
        f"Machine of the first three sections: {cpu.get('machine', machine())}.",
        "",
        "## Training throughput",
        "",
        f"lnstab's default config with only the shape changed: batch {c.train.batch_size} x context "
        f"{c.model.block_size} tokens, fp32, {c.train.steps} steps; probes every {c.probe.interval} steps on "
        f"{c.probe.batch_size} sequences ({n_plain} plain probes and {n_jac} with Jacobian norms per run: "
        f"Lanczos to a residual tolerance of {c.probe.jacobian_tol:g}, at most {c.probe.jacobian_iters} products).",
        "(a) lnstab, probes off; (b) lnstab, probes at that cadence; (c) plain PyTorch GPT",
        "(`benchmarks/baseline_gpt.py`). Ratios are time per step: below 1 means faster than the",
        "reference. Median [min, max] over repeats; each repeat times (c), (a), (c), a plain probe and",
        "a Jacobian probe in one process.",
        "",
        "| shape | params (M) | ms/step (a) | ms/step (c) | tokens/s (a) | (a)/(c) | (b)/(a) | probe ms: plain / with Jacobian |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['params_M']:.2f} | {r['ms_step_a']:.1f} | {r['ms_step_c']:.1f} | "
                     f"{r['tok_s_a']:,.0f} | {ratio(r['a_over_c'])} | {ratio(r['b_over_a'])} | "
                     f"{r['probe_ms']:.0f} / {r['probe_jac_ms']:.0f} "
                     f"({r['probe_ms'] / r['ms_step_a']:.1f} / {r['probe_jac_ms'] / r['ms_step_a']:.1f} steps) |")
    lines += ["", "Targets: (a)/(c) <= 1, (b)/(a) <= 1.05.", "", "## Peak memory", "",
              "Peak resident memory of a process doing 5 training steps and a full probe (MiB).", "",
              "| shape | peak RSS (MiB) |", "| --- | --- |"]
    lines += [f"| {s} | {m:.0f} |" for s, m in memory]
    lines += ["", "## Workflow", "", "| measurement | seconds |", "| --- | --- |"]
    lines.append(f"| dry run (`snakemake -n`) of a {dag[0]:,}-run grid: DAG build | {dag[1]:.1f} |")
    for name, secs in e2e:
        lines.append(f"| {name} | {secs:.0f} |")
    lines += ["", "Where a slurm.conf names a controller that does not answer, the SLURM executor plugin adds",
              "about 10 s to every Snakemake start (`scontrol show config` waits for it);",
              "`scripts/slurm-up.sh` keeps its configuration private and `scripts/slurm-down.sh` removes it, so the",
              "numbers above were taken either with that controller up or with no slurm.conf."]
    lines += ["", "## The default study's shape", ""] + default_shape_section(ROOT / "benchmarks" / "default_shape.json")
    lines += ["", "## Training groups", ""] + groups_section(ROOT / "benchmarks" / "groups.json")
    lines += ["", "## Where the default study's time goes", ""] + breakdown_section(ROOT / "benchmarks" / "breakdown.json")
    lines += ["", "## Inspecting a checkpoint", ""] + inspect_section(ROOT / "benchmarks" / "inspect_results.json")
    lines += ["", "## GPU", ""] + gpu_section(ROOT / "benchmarks" / "gpu_results.json")
    path.write_text("\n".join(lines) + "\n")


SECTIONS = ("throughput", "memory", "workflow", "default_shape", "groups", "inspect")
CPU_RESULTS = ROOT / "benchmarks" / "cpu_results.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no end-to-end workflow runs, no inspection")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, help="measure these sections only (default: all)")
    ap.add_argument("--render-only", action="store_true", help="measure nothing: render the kept results")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    only = set() if args.render_only else set(args.only or SECTIONS) - ({"workflow", "inspect"} if args.quick else set())
    cpu = json.loads(CPU_RESULTS.read_text()) if CPU_RESULTS.exists() else {}
    if "throughput" in only:
        cpu["throughput"] = throughput(repeats=3 if args.quick else 5, steps=5 if args.quick else 10)
    if "memory" in only:
        cpu["memory"] = [(f"L{s[0]} d{s[1]}", peak_memory(s)) for s in SHAPES]
    if "workflow" in only:
        cpu["dag"] = dag_build_time()
        cpu["workflow"] = [("default workflow (config/config.yaml), wall", workflow_time("config/config.yaml")),
                           ("smoke workflow (config/smoke.yaml), wall", workflow_time("config/smoke.yaml"))]
    if only & {"throughput", "memory", "workflow"}:
        cpu["machine"] = machine()
        CPU_RESULTS.write_text(json.dumps(cpu, indent=2) + "\n")
    if "default_shape" in only:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "default_shape.py")], check=True)
    if "groups" in only:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "groups.py")], check=True)
    if "inspect" in only:  # gpt2's and gpt2-xl's shapes: benchmarks/inspect_results.json
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "inspect_bench.py")], check=True)
    write_doc(Path(args.out), cpu)
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
