"""Before submitting a study: what each training job needs (``lnstab plan STUDY.yaml``).

Per job: parameters, memory per GPU (weights, gradients, AdamW states, DDP buckets, activations
at the micro-batch with and without activation checkpointing, the loss's transient logits),
tokens, GPU-hours at a stated model-FLOPs utilisation, wall time on the job's GPUs, checkpoint
size; for the study the totals, and a warning for each job that will not fit its GPU or its
runtime limit.

The activation term counts the tensors autograd saves for the backward pass, sub-layer by
sub-layer (``block_activation_bytes``); tests/test_plan.py checks it against the bytes
actually saved (torch.autograd.graph.saved_tensors_hooks) for every placement, both precisions
and with activation checkpointing, on shapes it was not written from. What it leaves out (the
CUDA context, allocator fragmentation, NCCL buffers) is why a job warns above 90% of the GPU.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from .config import ConfigError, RunConfig, check_batch_split, load_config
from .grid import expand, run_config
from .groups import group_size, plan_groups
from .hardware import PEAK_TFLOPS
from .model import FINAL_NORM, NORM_ON_BRANCH, NORM_ON_INPUT, NORM_ON_SUM, block_placements

GB = 1e9
FIT_FRACTION = 0.9  # of the GPU's memory; the rest for the CUDA context and fragmentation


def norms_per_block(placement: str) -> int:
    """Norm modules of one block (two sub-layers) of a block placement (lnstab.model)."""
    return 2 * ((placement in NORM_ON_INPUT) + (placement in NORM_ON_BRANCH + NORM_ON_SUM))


def block_activation_bytes(placement: str, d: int, heads: int, precision: str) -> float:
    """Bytes saved for the backward pass per token by one block (attention + MLP sub-layers) of
    a block placement (pre, peri, post, none, output, deepnorm; ``mix`` is resolved per block).

    Each sub-layer keeps the input of each matrix product (2 bytes per entry under bf16
    autocast, 4 in fp32): attention 1 + 3 (q, k, v) + 1 (its output) entries per channel, the
    MLP 1 + 4 (GELU input) + 4 (GELU output); attention also its log-sum-exp, one per head.
    A norm keeps its input and two statistics: a norm of the branch input (pre, peri) or of the
    sum (post, deepnorm) keeps the fp32 stream or sum, a norm of the branch output (peri,
    output) the branch output as computed.
    """
    m = 2 if precision == "bf16" else 4  # bytes of a saved matmul input
    matmul_inputs = (1 + 3 + 1) + (1 + 4 + 4)  # per channel, both sub-layers
    total = matmul_inputs * m * d + 4 * heads
    if placement in NORM_ON_INPUT:
        total += 2 * (4 * d + 8)
    if placement in NORM_ON_BRANCH:
        total += 2 * (m * d + 8)
    if placement in NORM_ON_SUM:
        total += 2 * (4 * d + 8)
    return total


def activation_bytes(cfg: RunConfig, micro_batch: int, checkpointing: bool) -> float:
    """Bytes autograd keeps from the forward pass to the backward pass for one micro-batch."""
    m, p = cfg.model, cfg.train.precision
    tokens = micro_batch * m.block_size
    blocks = sum(8 * m.d_model if checkpointing  # the fp32 input of each sub-layer, recomputed from there
                 else block_activation_bytes(b, m.d_model, m.n_head, p) for b in block_placements(m))
    # the head: the input of its matrix product (the normed copy of the final stream for pre and
    # peri, whose LayerNorm also keeps the fp32 stream and two statistics), the token ids and
    # targets, and the fp32 log-softmax over the vocabulary
    final_norm = m.placement in FINAL_NORM
    head = (2 if p == "bf16" else 4) * m.d_model + final_norm * (4 * m.d_model + 8) + 16 + 4 * m.vocab_size
    per_token = blocks + head
    cached = 0.0
    if p == "bf16":  # autocast keeps a bf16 copy of every weight it cast, for the backward pass
        cached = 2 * m.vocab_size * m.d_model + (0 if checkpointing else 2 * 12 * m.d_model ** 2 * m.n_layer)
    return tokens * per_token + cached


def parameter_count(cfg: RunConfig) -> int:
    """Every parameter (the position embedding included; the head is tied to the embedding)."""
    m = cfg.model
    d, bias, V = m.d_model, int(m.bias), m.vocab_size
    ln = d * (1 + bias)
    blocks = sum(12 * d * d + bias * (3 * d + d + 4 * d + d) + norms_per_block(b) * ln for b in block_placements(m))
    final = ln if m.placement in FINAL_NORM else 0
    return V * d + m.block_size * d + blocks + final


def flops_per_token(cfg: RunConfig) -> float:
    """Training FLOPs per token, as lnstab.model.GPT.flops_per_token (6N + attention)."""
    m = cfg.model
    n = parameter_count(cfg) - m.block_size * m.d_model
    return 6 * n + 12 * m.n_layer * m.d_model * m.block_size


@dataclass
class JobPlan:
    run: str
    params_m: float  # millions
    processes: int
    micro_batch: int  # sequences per micro-batch on each process
    weights_gb: float
    grads_gb: float
    adam_gb: float
    ddp_gb: float
    act_gb: float  # activations at the micro-batch as configured
    act_other_gb: float  # ... with activation checkpointing toggled
    transient_gb: float  # logits and their gradient at the loss; one recomputed block with checkpointing
    peak_gb: float  # per GPU, as configured
    tokens_b: float  # billions, over the run
    gpu_hours: float
    wall_hours: float  # on the job's processes
    ckpt_gb: float
    fits_memory: bool
    fits_runtime: bool


def plan_job(run: str, cfg: RunConfig, processes: int, runtime_min: float, gpu_memory_gb: float,
             mfu: float, peak_tflops: float) -> JobPlan:
    t = cfg.train
    P = parameter_count(cfg)
    micro = t.batch_size // (t.grad_accum * processes)
    ckpt = t.activation_checkpointing
    act = activation_bytes(cfg, micro, ckpt)
    other = activation_bytes(cfg, micro, not ckpt)
    tokens_per_micro = micro * cfg.model.block_size
    transient = 2 * 4 * tokens_per_micro * cfg.model.vocab_size
    if ckpt:  # one block recomputed at a time: the largest
        transient += tokens_per_micro * max(block_activation_bytes(b, cfg.model.d_model, cfg.model.n_head,
                                                                   t.precision) for b in block_placements(cfg.model))
    weights, grads, adam = 4 * P, 4 * P, 8 * P  # fp32 master weights; AdamW's two moments
    ddp = 4 * P if processes > 1 else 0  # DDP's gradient buckets
    peak = weights + grads + adam + ddp + act + transient
    tokens = t.steps * t.batch_size * cfg.model.block_size
    # recomputation repeats the forward pass: 8 instead of 6 FLOPs per parameter and token
    flops = tokens * flops_per_token(cfg) * (8 / 6 if ckpt else 1.0)
    evals = (t.steps // t.eval_interval + 1) * t.eval_batches * t.batch_size * cfg.model.block_size
    flops += evals * flops_per_token(cfg) / 3  # forward only
    gpu_hours = flops / (mfu * peak_tflops * 1e12) / 3600
    wall = gpu_hours / processes
    return JobPlan(run=run, params_m=P / 1e6, processes=processes, micro_batch=micro,
                   weights_gb=weights / GB, grads_gb=grads / GB, adam_gb=adam / GB, ddp_gb=ddp / GB,
                   act_gb=act / GB, act_other_gb=other / GB, transient_gb=transient / GB, peak_gb=peak / GB,
                   tokens_b=tokens / 1e9, gpu_hours=gpu_hours, wall_hours=wall, ckpt_gb=12 * P / GB,
                   fits_memory=peak / GB <= FIT_FRACTION * gpu_memory_gb,
                   fits_runtime=wall * 60 <= runtime_min)


def corpus_vocabulary(data: dict) -> int | None:
    """The vocabulary a study's corpus will have, where it is known without tokenizing it all:
    GPT-2's BPE, or the built-in corpus's characters (a second to read)."""
    from .data import GPT2_VOCAB, load_corpus

    cfg = load_config(base={"data": data}).data
    if cfg.tokenizer == "gpt2":
        return GPT2_VOCAB
    if cfg.source == "shakespeare":
        return load_corpus(cfg).vocab_size
    return None


def plan_study(study: dict, gpu: str = "H100", gpu_memory_gb: float = 80.0, mfu: float = 0.35,
               vocab_size: int | None = None) -> pd.DataFrame:
    """One row per training job of a workflow config (sweeps, base, resources)."""
    if gpu not in PEAK_TFLOPS:
        raise ValueError(f"--gpu: unknown GPU {gpu!r} (known: {', '.join(PEAK_TFLOPS)})")
    if not 0 < mfu <= 1:  # also false for nan
        raise ValueError(f"--mfu: a fraction in (0, 1] is expected, got {mfu}")
    if not gpu_memory_gb > 0:
        raise ValueError(f"--gpu-memory: a positive number of GB is expected, got {gpu_memory_gb}")
    if not isinstance(study, dict) or "sweeps" not in study:
        raise ValueError("not a study: a mapping with `sweeps` (and base, resources) is expected")
    base = study.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"base: expected a mapping of sections (model, train, data, probe), got {base!r}")
    try:  # a section that is not a mapping, or a bad value: named where the study file has it
        load_config(base=base)
    except ConfigError as e:
        raise ConfigError(f"base.{e}") from None
    processes, runtime = train_resources(study)
    if vocab_size is None and base.get("model", {}).get("vocab_size") is None:
        vocab_size = corpus_vocabulary(base.get("data", {}))
    rows, cfgs = [], {}
    for run, params in expand(study["sweeps"], base).items():
        extra = {"model": {"vocab_size": vocab_size}} if vocab_size is not None else None
        cfg = run_config(params, base, extra)
        check_batch_split(cfg.train, processes)
        if cfg.model.vocab_size is None:
            raise ValueError("model.vocab_size: set it in base.model (or pass --vocab-size) to plan a "
                             "study whose vocabulary comes from its corpus")
        bf16, fp32 = PEAK_TFLOPS[gpu]
        peak = bf16 if cfg.train.precision == "bf16" else fp32
        rows.append(asdict(plan_job(run, cfg, processes, runtime, gpu_memory_gb, mfu, peak)))
        cfgs[run] = cfg
    groups = plan_groups(cfgs, group_size(study, processes))
    return per_training_job(pd.DataFrame(rows), groups, runtime, gpu_memory_gb)


SUMMED = ("params_m", "weights_gb", "grads_gb", "adam_gb", "ddp_gb", "act_gb", "act_other_gb", "transient_gb",
          "peak_gb", "tokens_b", "gpu_hours", "wall_hours", "ckpt_gb")


def per_training_job(runs: pd.DataFrame, groups: dict[str, list[str]], runtime: float,
                     gpu_memory_gb: float) -> pd.DataFrame:
    """The runs' rows as the workflow's training jobs: a training group (lnstab.groups) holds every
    member's weights, states and activations at once and trains them one step at a time, so its
    memory and time are the sums (an upper bound on its time: a group is faster per run), against
    a runtime of resources.train.runtime per run."""
    if all(len(m) == 1 for m in groups.values()):
        return runs.assign(runtime_min=runtime)
    by_run = runs.set_index("run")
    jobs = []
    for name, members in groups.items():
        part = by_run.loc[members]
        job = {"run": name, **part.iloc[0].to_dict(), **{c: part[c].sum() for c in SUMMED}}
        job["runtime_min"] = runtime * len(members)
        job["fits_memory"] = job["peak_gb"] <= FIT_FRACTION * gpu_memory_gb
        job["fits_runtime"] = job["wall_hours"] * 60 <= job["runtime_min"]
        jobs.append(job)
    return pd.DataFrame(jobs)


def train_resources(study: dict) -> tuple[int, float]:
    """(processes, runtime in minutes) of a study's training jobs, checked as the workflow's
    schema checks them (workflow/schemas/config.schema.yaml)."""
    resources = study.get("resources") or {}
    if not isinstance(resources, dict) or not isinstance(resources.get("train") or {}, dict):
        raise ConfigError(f"resources: expected a mapping such as {{train: {{gpu: 1, runtime: 60}}}}, got {resources!r}")
    res = resources.get("train") or {}
    for key, minimum in (("processes", 1), ("gpu", 0), ("runtime", 1), ("mem_mb", 1), ("cpus_per_task", 1)):
        value = res.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ConfigError(f"resources.train.{key}: an integer >= {minimum} is expected, got {value!r}")
    return res.get("processes", max(1, res.get("gpu", 0))), res.get("runtime", 30)


def warnings(plan: pd.DataFrame, gpu_memory_gb: float) -> list[str]:
    out = []
    for _, r in plan.iterrows():
        runtime_min = r["runtime_min"]
        if not r["fits_memory"]:
            hint = ("" if r["act_other_gb"] >= r["act_gb"] else
                    f"; with train.activation_checkpointing the activations take {r['act_other_gb']:.1f} GB")
            out.append(f"{r['run']}: {r['peak_gb']:.1f} GB per GPU exceeds {FIT_FRACTION:.0%} of "
                       f"{gpu_memory_gb:g} GB{hint}; or raise train.grad_accum / resources.train.processes")
        if not r["fits_runtime"]:
            out.append(f"{r['run']}: {r['wall_hours']:.1f} h on {r['processes']} GPU(s) exceeds "
                       f"its runtime of {runtime_min:g} min (resources.train.runtime per run): it will need "
                       f"{math.ceil(r['wall_hours'] * 60 / runtime_min)} jobs (each resumes from its checkpoint)")
    return out


def hours(h: float) -> str:
    """GPU-hours with the digits that matter: 263, 12.5, 0.16 (never a small job rounded to 0)."""
    return f"{h:,.0f}" if h >= 100 else f"{h:.3g}"


def render(plan: pd.DataFrame, study: dict, gpu: str, gpu_memory_gb: float, mfu: float) -> str:
    """The plan as Markdown: the jobs, the totals, the warnings."""
    cols = {"run": "job", "params_m": "params (M)", "processes": "GPUs", "micro_batch": "micro-batch",
            "weights_gb": "weights", "grads_gb": "grads", "adam_gb": "AdamW", "ddp_gb": "DDP",
            "act_gb": "activations", "act_other_gb": "activations (AC toggled)", "transient_gb": "loss+recompute",
            "peak_gb": "peak GB/GPU", "tokens_b": "tokens (B)", "gpu_hours": "GPU-h", "wall_hours": "wall h",
            "ckpt_gb": "ckpt GB"}
    shown = plan[list(cols)].rename(columns=cols)
    lines = [f"Plan on {gpu} ({gpu_memory_gb:g} GB) at {mfu:.0%} MFU; memory in GB per GPU "
             f"(1 GB = 1e9 bytes); activation checkpointing "
             f"{'on' if study.get('base', {}).get('train', {}).get('activation_checkpointing') else 'off'}.",
             "", shown.to_markdown(index=False, floatfmt=".3g"), "",
             f"Study: {len(plan)} jobs, {hours(plan['gpu_hours'].sum())} GPU-hours, "
             f"{plan['tokens_b'].sum():,.1f} B tokens, {plan['ckpt_gb'].sum():,.1f} GB of checkpoints "
             f"(one per job, kept), largest job {plan['peak_gb'].max():.1f} GB per GPU."]
    if not (study.get("resources") or {}).get("train", {}).get("gpu"):
        lines.append(f"This study asks for no GPU (resources.train.gpu is 0): these are the needs of its "
                     f"jobs on {gpu}s, not of its CPU runs.")
    warn = warnings(plan, gpu_memory_gb)
    lines += [""] + [f"WARNING {w}" for w in warn] if warn else ["", "Every job fits its GPU and its runtime limit."]
    return "\n".join(lines) + "\n"
