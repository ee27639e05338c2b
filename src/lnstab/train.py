"""Training one run: deterministic, resumable, probed, and never crashing on divergence.

Output folder of a run:
    metrics.csv      step, train_loss, val_loss, learning_rate, grad_norm, tokens_per_s, elapsed_s
    probes.csv       step, point, layer, sublayer, quantity, value        (lnstab.probes)
    bounds.csv       step, point, layer, sublayer, quantity, measured, lower, bound, ratio, ...
    summary.json     status (completed | diverged), steps, final losses, violations, timings
    provenance.json  resolved config, versions, git commit, device, CPU, threads; every segment
    ckpt.pt          model, optimizer, step, every RNG state, rows so far (the final one at the end)

What the folder holds, the checkpoint, the lock and the summary are lnstab.runfolder; this module
is the loop. Randomness has three independent sources, so none can shift another: the training batches
(generator seeded with ``seed``), the validation batches (re-seeded at every evaluation) and the
probe batch (drawn once). A run killed at any moment resumes from ckpt.pt bit-identically.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, distributed
from .launch import EARLY_STOPS, PREEMPTED_EXIT, STOP_SIGNALS, catching_stop_signals  # noqa: F401 - part of this interface
from .config import ConfigError, RunConfig, check_batch_split
from .data import get_batch, load_corpus
from .io import write_json
from .watch import Watchers
from .measure import autocast, evaluate, probe_now
from .model import GPT, last_map_parameters
from .runfolder import (  # noqa: F401 - RunError, TIMING_COLUMNS: part of this module's interface
    TIMING_COLUMNS, RunError, RunState, StaleCheckpoint, move_aside, refuse_links, repair_outputs, run_lock,
    run_summary, run_tables)

# offset that gives the probe batch's generator its own stream (lnstab.measure has the evaluation's)
PROBE_SEED_OFFSET = 2_000_003


class Preempted(Exception):
    """Stopped by a signal; the checkpoint holds every step done, the same command resumes."""


def device_type(name: str) -> str:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no CUDA device is available")
    return name


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    kind = device_type(name)
    return torch.device("cuda", local_rank) if kind == "cuda" else torch.device("cpu")


def set_determinism(cfg: RunConfig) -> None:
    t = cfg.train
    torch.set_num_threads(t.threads)
    if t.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
    torch.use_deterministic_algorithms(t.deterministic)
    torch.backends.cudnn.benchmark = not t.deterministic
    torch.backends.cuda.matmul.allow_tf32 = t.tf32
    torch.backends.cudnn.allow_tf32 = t.tf32
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)


def lr_at(step: int, cfg: RunConfig) -> float:
    """Linear warmup to lr, then cosine decay to lr * min_lr_ratio at the last step."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    frac = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def make_optimizer(model: GPT, cfg: RunConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only. With model.fold_dt the last maps get lr x dt, weight
    decay / dt and eps / dt (their ``lr_scale`` is read at every step): the dt reparametrisation."""
    t, m = cfg.train, cfg.model
    params = [p for p in model.parameters() if p.requires_grad]
    folded = {id(p) for p in last_map_parameters(model)} if m.fold_dt else set()
    groups = []
    for is_last in (False, True):
        k = m.dt if is_last else 1.0
        for matrices in (True, False):
            ps = [p for p in params if (p.ndim >= 2) == matrices and (id(p) in folded) == is_last]
            if ps:  # gains and biases are not decayed
                groups.append({"params": ps, "weight_decay": t.weight_decay / k if matrices else 0.0,
                               "lr_scale": k, "eps": 1e-8 / k})
    # CUDA: the fused kernel; CPU: one update over each group's tensors at once (foreach), the
    # per-parameter loop's arithmetic in the same order (byte-identical runs), with fewer
    # Python-level operations: most of a small model's step (docs/benchmarks.md)
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=device.type == "cuda",
                             foreach=device.type != "cuda")


def probe_batch(cfg: RunConfig, corpus) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's fixed probe batch: validation windows drawn once, by their own generator."""
    gen = torch.Generator().manual_seed(cfg.seed + PROBE_SEED_OFFSET)
    return get_batch(corpus.val, cfg.probe.batch_size, cfg.model.block_size, gen)


def probe_steps(cfg: RunConfig) -> list[int]:
    n, every = cfg.train.steps, cfg.probe.interval
    steps = set(range(0, n, every)) if every else {0}
    return sorted(steps | {n})


class Progress:
    """A bar on a terminal; otherwise one line every ``every`` steps (logs stay readable)."""

    def __init__(self, total: int, every: int, name: str, enabled: bool = True):
        self.total, self.every, self.name, self.enabled = total, every, name, enabled
        self.tty = sys.stderr.isatty()

    def update(self, step: int, loss: float, tok_s: float, eta_s: float) -> None:
        if not self.enabled:
            return
        msg = f"{self.name} step {step}/{self.total} loss {loss:.4f} {tok_s:,.0f} tok/s ETA {eta_s:.0f}s"
        if self.tty:
            bar = "#" * int(30 * step / self.total)
            sys.stderr.write(f"\r[{bar:<30}] {msg}  ")
            if step == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif step % self.every == 0 or step == self.total:
            print(msg, file=sys.stderr, flush=True)


class Run:
    """One training run: its model, optimizer, data and RNGs, and its ``state``. The loop is
    ``fit``: probe when due, one training step (``advance``), then evaluation, progress and a
    checkpoint when due (``after_step``); ``finish`` writes the outputs. What a checkpoint holds
    and how a run resumes is lnstab.checkpoint; the ranks of a multi-process job lnstab.distributed."""

    def __init__(self, cfg: RunConfig, out_dir: str | Path, verbose: bool = True, corpus_meta: dict | None = None,
                 grid: dict | None = None, residual: type | None = None, watch=()):
        self.out = Path(out_dir)
        self.builtin = residual is None  # a screened block of the user's own has no bounds (lnstab.screen)
        self.grid = grid  # the run's grid point in a study (recorded in summary.json)
        self.group = distributed.from_environment(device_type(cfg.train.device))
        # live views of the run (lnstab.watch), on rank 0, opened by fit
        self.watchers = Watchers(watch if self.group.main else (), self.out)
        self.verbose = verbose and self.group.main
        self.device = resolve_device(cfg.train.device, self.group.local_rank)
        check_batch_split(cfg.train, self.group.world_size)
        self.micro_batch = cfg.train.batch_size // (cfg.train.grad_accum * self.group.world_size)
        set_determinism(cfg)
        self.corpus = load_corpus(cfg.data, cfg.model.vocab_size, corpus_meta)
        self.cfg = with_vocabulary(cfg, self.corpus.vocab_size)
        self.model = (GPT(cfg.model) if residual is None else GPT(cfg.model, residual)).to(self.device)
        self.model.activation_checkpointing = cfg.train.activation_checkpointing
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.ddp = distributed.data_parallel(self.model, self.group, self.device)
        compile_ = torch.compile if cfg.train.compile else (lambda m: m)
        self.fwd = compile_(self.model)
        self.train_fwd = compile_(self.ddp) if self.ddp is not None else self.fwd
        self.stop_signal: int | None = None
        self.train_gen = torch.Generator().manual_seed(cfg.seed)
        self.probe_batch = probe_batch(cfg, self.corpus)
        self.state = RunState()
        self.resumed_from: int | None = None
        self.progress_bar = Progress(cfg.train.steps, cfg.train.log_interval, self.out.name, self.verbose)

    # -- one training step -------------------------------------------------------------------
    def micro_batches(self):
        """This rank's micro-batches of the step's global batch (lnstab.distributed)."""
        x, y = get_batch(self.corpus.train, self.cfg.train.batch_size, self.cfg.model.block_size, self.train_gen)
        return distributed.rank_micro_batches(x, y, self.group, self.micro_batch, self.device)

    def train_step(self) -> tuple[float, float]:
        """One optimizer step at ``state.step``: (loss, gradient norm); NaN where not finite,
        in which case the weights are left as they were."""
        lr = lr_at(self.state.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.accumulate_gradients(self.micro_batches())
        if not math.isfinite(loss):
            return loss, float("nan")
        gnorm = self.gradient_norm()
        if not math.isfinite(gnorm):
            return float("nan"), gnorm
        self.optimizer.step()
        return loss, gnorm

    def accumulate_gradients(self, batches) -> float:
        """Forward and backward over the micro-batches; the step's loss, averaged over the ranks."""
        loss_sum = 0.0
        for i, (x, y) in enumerate(batches):
            # DDP averages gradients over the ranks once, at the last micro-batch
            sync = self.ddp is None or i == len(batches) - 1
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()):
                with autocast(self):
                    _, loss = self.train_fwd(x, y)
                (loss / len(batches)).backward()  # a NaN loss gives NaN gradients: no step follows
            loss_sum += loss.item()
        return self.group.mean(loss_sum / len(batches))

    def gradient_norm(self) -> float:
        """The global gradient norm, after clipping it to train.grad_clip where that is set."""
        if self.cfg.train.grad_clip > 0:
            return torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip).item()
        return torch.linalg.vector_norm(torch.stack(
            [p.grad.norm() for p in self.model.parameters() if p.grad is not None])).item()

    def advance(self) -> dict | None:
        """Train one step and record its metrics row; None if the run diverged."""
        t0 = time.perf_counter()
        loss, gnorm = self.train_step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return self.record_step(loss, gnorm, time.perf_counter() - t0)

    def record_step(self, loss: float, gnorm: float, step_s: float) -> dict | None:
        """The metrics row of the step just trained (alone, or this run's share of its group's
        step: lnstab.groups); None if the run diverged there."""
        st, t = self.state, self.cfg.train
        st.train_time += step_s
        st.step += 1
        row = {"step": st.step, "train_loss": loss, "val_loss": float("nan"),
               "learning_rate": lr_at(st.step - 1, self.cfg), "grad_norm": gnorm,
               "tokens_per_s": t.batch_size * self.cfg.model.block_size / step_s, "elapsed_s": st.train_time}
        st.metrics.append(row)
        if not (math.isfinite(loss) and math.isfinite(gnorm)):
            self.diverge(st.step)
            return None
        return row

    def after_step(self, row: dict, bar: Progress) -> None:
        """Evaluation, progress and a checkpoint, each when due; a stop signal ends the run here,
        after a checkpoint that holds this step."""
        st, t = self.state, self.cfg.train
        if (st.step % t.eval_interval == 0 or st.step == t.steps) and self.group.main:
            row["val_loss"] = evaluate(self)
        eta = (t.steps - st.step) * st.train_time / max(1, st.step - (self.resumed_from or 0))
        bar.update(st.step, row["train_loss"], row["tokens_per_s"], eta)
        self.watchers.step(row)
        if t.ckpt_interval and st.step % t.ckpt_interval == 0 and st.step < t.steps:
            checkpoint.save(self)
        if self.group.any(self.stop_signal is not None) and st.step < t.steps:
            checkpoint.save(self)
            name = signal.Signals(self.stop_signal).name if self.stop_signal else "a signal to another rank"
            raise Preempted(f"{self.out}: stopped by {name} after step {st.step}; the checkpoint holds it, "
                            "the same command resumes")

    def diverge(self, step: int) -> None:
        self.state.status, self.state.diverged_step = "diverged", step
        self.log(f"diverged at step {step}: non-finite loss or hidden state; writing outputs")

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"[lnstab] {msg}", file=sys.stderr, flush=True)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to train.steps (or a divergence, or a stop signal: Preempted), then the outputs."""
        def note(signum):
            self.stop_signal = signum

        with catching_stop_signals(note), contextlib.closing(self.watchers):
            st = self.state
            if self.group.any(self.stop_signal is not None):  # before any step: the checkpoint holds all
                raise Preempted(f"{self.out}: stopped by a signal before training resumed at step {st.step}; "
                                "the same command resumes")
            self.watchers.start(self.cfg.to_dict(), st.step)
            self.loop()
            return self.conclude()

    def conclude(self) -> dict:
        """The final checkpoint and summary.json of a run that completed or diverged."""
        st = self.state
        if st.segments:
            st.segments[-1]["to_step"] = st.step
        st.summary = self.summary()  # in the final checkpoint: summary.json is checked against it
        checkpoint.save(self)
        return checkpoint.finish(self)

    def loop(self) -> None:
        st, t = self.state, self.cfg.train
        probes_at = set(probe_steps(self.cfg)) if self.cfg.probe.enabled else set()
        while st.status == "running":
            due = st.step in probes_at and st.step not in st.probed
            # rank 0 probes; every rank learns whether the hidden states were finite
            if due and self.group.any(self.group.main and not probe_now(self)):
                self.diverge(st.step)
                return
            if due and not self.group.main:
                st.probed.append(st.step)
            if st.step >= t.steps:
                st.status = "completed"
                return
            row = self.advance()
            if row is None:
                return
            self.after_step(row, self.progress_bar)

    def summary(self) -> dict:
        return run_summary(self.state, self.cfg, self.model, self.device, self.resumed_from, self.grid,
                           self.group.world_size)


def with_vocabulary(cfg: RunConfig, corpus_vocab: int) -> RunConfig:
    """``cfg`` with model.vocab_size set to the corpus's where unset; a ConfigError where it is
    smaller than the corpus's vocabulary."""
    if cfg.model.vocab_size is None:
        cfg.model.vocab_size = corpus_vocab
    elif cfg.model.vocab_size < corpus_vocab:
        raise ConfigError(f"model.vocab_size: {cfg.model.vocab_size} is smaller than the corpus's "
                          f"vocabulary of {corpus_vocab} tokens")
    return cfg


def train(cfg: RunConfig, out_dir: str | Path, verbose: bool = True, restart_stale: bool = False,
          corpus_meta: dict | None = None, grid: dict | None = None, allow_other_code: bool = False,
          watch=()) -> dict:
    """Train one run into ``out_dir``, resuming from its checkpoint if one is there.

    A checkpoint written with another config or on other data is never resumed: with
    ``restart_stale`` it is moved to out/superseded/<n>/ and the run starts again, otherwise a
    RunError says so. A finished run rewrites any output that is missing or differs. Under
    torchrun, rank 0 holds the folder's lock and decides; the other ranks then read the same
    checkpoint (any number of ranks that divides the batch resumes any checkpoint). A run trained
    partly by other code (another version or commit) is resumed only with ``allow_other_code``.
    ``watch`` names live views of the run (lnstab.watch: tensorboard, wandb)."""
    out = Path(out_dir)
    refuse_links(out)
    run = Run(cfg, out, verbose, corpus_meta, grid, watch=watch)  # every check before anything is written
    group = run.group
    with run_lock(out) if group.main else contextlib.nullcontext():
        if group.main:
            run = resume_or_restart(run, restart_stale, allow_other_code,
                                    lambda: Run(cfg, out, verbose, corpus_meta, grid, watch=watch))
        group.barrier()  # rank 0 has resumed, moved a stale run aside or found none
        if not group.main and (out / "ckpt.pt").exists():
            checkpoint.restore(run, out / "ckpt.pt")
        if run.state.status != "running":
            return already_finished(run)
        if run.resumed_from is not None:
            run.log(f"resuming {out} from step {run.state.step} on {group.world_size} process(es)")
        return run.fit()


def resume_or_restart(run: Run, restart_stale: bool, allow_other_code: bool, fresh) -> Run:
    """Rank 0: resume ``run`` from its folder's checkpoint if there is one; a stale one (another
    config or other data) is a RunError, or with ``restart_stale`` is moved aside and ``fresh()``
    starts again. A running run records its new segment in provenance.json."""
    out, ckpt = run.out, run.out / "ckpt.pt"
    for stale in out.glob(".*.tmp"):  # a write cut short by a kill: its target is intact
        stale.unlink()
    if ckpt.exists():
        try:
            checkpoint.restore(run, ckpt)
        except StaleCheckpoint as e:
            if not restart_stale:
                raise RunError(f"{e}; use a new output folder, or --restart to move the old run "
                               "aside and train again") from None
            dest = move_aside(out)
            run.log(f"{e}: moved the old run to {dest}; training again from step 0")
            run = fresh()
    if run.state.status == "running":
        checkpoint.begin_segment(run, allow_other_code)
        write_json(out / "provenance.json", checkpoint.run_provenance(run))
    return run


def already_finished(run: Run) -> dict:
    """A run that had completed or diverged: its summary; rank 0 rewrites any output that is
    missing or differs from the checkpoint."""
    if not run.group.main:
        return run.summary()
    documents = {"summary.json": run.state.summary or run.summary()}
    if run.state.provenance:  # checkpoints older than segments hold no provenance
        documents["provenance.json"] = checkpoint.run_provenance(run)
    fixed = repair_outputs(run.out, run_tables(run.state), documents)
    run.log(f"{run.out} is already {run.state.status}; " + (f"rewrote {', '.join(fixed)} from the checkpoint"
                                                            if fixed else "nothing to do"))
    return json.loads((run.out / "summary.json").read_text())
