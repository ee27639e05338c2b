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
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import distributed
from .launch import EARLY_STOPS, PREEMPTED_EXIT, STOP_SIGNALS  # noqa: F401 - part of this interface
from .bounds import bound_rows
from .config import ConfigError, RunConfig, check_batch_split
from .data import get_batch, load_corpus
from .io import save_torch, write_csv, write_json
from .model import GPT, last_map_parameters
from .probes import probe
from .runfolder import (  # noqa: F401 - RunError, TIMING_COLUMNS: part of this module's interface
    TIMING_COLUMNS, RunError, RunState, StaleCheckpoint, _diff_keys, move_aside, numpy_rng_state, provenance,
    read_checkpoint, refuse_links, repair_outputs, run_lock, run_summary, run_tables, same_code, segment,
    set_numpy_rng_state)

# offsets that give the evaluation and probe generators their own streams
EVAL_SEED_OFFSET, PROBE_SEED_OFFSET = 1_000_003, 2_000_003


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
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=device.type == "cuda")


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
    checkpoint when due (``after_step``); ``finish`` writes the outputs."""

    def __init__(self, cfg: RunConfig, out_dir: str | Path, verbose: bool = True, corpus_meta: dict | None = None,
                 grid: dict | None = None, residual: type | None = None):
        self.out = Path(out_dir)
        self.builtin = residual is None  # a screened block of the user's own has no bounds (lnstab.screen)
        self.grid = grid  # the run's grid point in a study (recorded in summary.json)
        self.group = distributed.from_environment(device_type(cfg.train.device))
        self.verbose = verbose and self.group.main
        self.device = resolve_device(cfg.train.device, self.group.local_rank)
        check_batch_split(cfg.train, self.group.world_size)
        self.micro_batch = cfg.train.batch_size // (cfg.train.grad_accum * self.group.world_size)
        set_determinism(cfg)
        self.corpus = load_corpus(cfg.data, cfg.model.vocab_size, corpus_meta)
        if cfg.model.vocab_size is None:
            cfg.model.vocab_size = self.corpus.vocab_size
        elif cfg.model.vocab_size < self.corpus.vocab_size:
            raise ConfigError(f"model.vocab_size: {cfg.model.vocab_size} is smaller than the corpus's "
                              f"vocabulary of {self.corpus.vocab_size} tokens")
        self.cfg = cfg
        self.model = (GPT(cfg.model) if residual is None else GPT(cfg.model, residual)).to(self.device)
        self.model.activation_checkpointing = cfg.train.activation_checkpointing
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        # training goes through DDP (gradients averaged over the ranks); evaluation and probes,
        # on rank 0 alone, through the model itself
        self.ddp = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.group.distributed else None)
        compile_ = torch.compile if cfg.train.compile else (lambda m: m)
        self.fwd = compile_(self.model)
        self.train_fwd = compile_(self.ddp) if self.ddp is not None else self.fwd
        self.stop_signal: int | None = None
        self.train_gen = torch.Generator().manual_seed(cfg.seed)
        self.probe_batch = probe_batch(cfg, self.corpus)
        self.state = RunState()
        self.resumed_from: int | None = None

    # -- checkpoint ------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        return {
            "config": self.cfg.to_dict(), "data_fingerprint": self.corpus.fingerprint, **asdict(self.state),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "train_gen": self.train_gen.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy_rng": numpy_rng_state(), "python_rng": random.getstate(),
        }

    def save(self) -> None:
        if self.group.main:  # the ranks hold the same weights and RNG states: one copy suffices
            if self.state.segments:
                self.state.segments[-1]["to_step"] = self.state.step
            with self.writing():
                save_torch(self.out / "ckpt.pt", self.checkpoint())
                self.write_tables()
                write_json(self.out / "provenance.json", self.provenance())

    @contextlib.contextmanager
    def writing(self):
        """A failed write (a full disk, a quota) ends the run with one line: every write is
        atomic (lnstab.io), so the last complete checkpoint and outputs are intact."""
        try:
            yield
        except (OSError, RuntimeError) as e:  # torch.save reports a failed write as RuntimeError
            cause = getattr(e, "strerror", None) or str(e).splitlines()[0]
            raise RunError(f"{self.out}: cannot write the run's files at step {self.state.step} ({cause}); "
                           "the last complete checkpoint is intact: free space and run the same command "
                           "to resume") from None

    def begin_segment(self, allow_other_code: bool) -> None:
        """Record that this process trains from the current step; resuming a run that other code
        trained (another version, or other package source: runfolder.code_digest) mixes two
        programs in one result, so it needs ``allow_other_code``."""
        st = self.state
        new = segment(st.step, self.device, self.group.world_size)
        if st.segments and not same_code(st.segments[-1], new) and not allow_other_code:
            old = st.segments[-1]
            raise RunError(f"{self.out}: steps {old['from_step']}-{old['to_step']} were trained by other code "
                           f"(lnstab {old['lnstab_version']}, source {old.get('code_sha256')}, commit "
                           f"{old['git_commit'][:12]}; this is {new['lnstab_version']}, source {new['code_sha256']}, "
                           f"commit {new['git_commit'][:12]}); resume with --allow-other-code to mix them (each "
                           "segment is recorded in provenance.json), or delete ckpt.pt to train again from step 0")
        st.segments.append(new)
        st.provenance = provenance(self.cfg, self.device, self.corpus, self.group.world_size)

    def provenance(self) -> dict:
        return {**self.state.provenance, "segments": self.state.segments}

    def load(self, path: Path) -> None:
        """Resume from ``path``; StaleCheckpoint if it holds another config or other data."""
        ck = read_checkpoint(path)
        # a key added to lnstab after the checkpoint was written trained it at its default
        written = {sec: {**d, **ck["config"].get(sec, {})} if isinstance(d, dict) else ck["config"].get(sec, d)
                   for sec, d in RunConfig().to_dict().items()}
        if written != self.cfg.to_dict():
            diff = _diff_keys(written, self.cfg.to_dict())
            raise StaleCheckpoint(f"{path} was written with a different config ({', '.join(diff)})")
        if ck.get("data_fingerprint") != self.corpus.fingerprint:
            raise StaleCheckpoint(f"{path} was trained on other data (corpus fingerprint "
                                  f"{ck.get('data_fingerprint')} -> {self.corpus.fingerprint})")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.train_gen.set_state(ck["train_gen"])
        torch.set_rng_state(ck["torch_rng"])
        if ck["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        set_numpy_rng_state(ck["numpy_rng"])
        random.setstate(ck["python_rng"])
        self.state = RunState(**{f.name: ck[f.name] for f in fields(RunState) if f.name in ck})
        self.resumed_from = self.state.step

    # -- evaluation and probes ---------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> float:
        t0 = time.perf_counter()
        self.model.eval()
        gen = torch.Generator().manual_seed(self.cfg.seed + EVAL_SEED_OFFSET)
        losses = []
        for _ in range(self.cfg.train.eval_batches):
            x, y = (t.to(self.device) for t in get_batch(self.corpus.val, self.cfg.train.batch_size,
                                                         self.cfg.model.block_size, gen))
            with self.autocast():
                losses.append(self.fwd(x, y)[1].item())
        self.model.train()
        self.state.eval_time += time.perf_counter() - t0
        return float(np.mean(losses))

    def run_probe(self) -> bool:
        """Probe at the current step; False if the hidden states are not finite."""
        t0 = time.perf_counter()
        st = self.state
        x, y = (t.to(self.device) for t in self.probe_batch)
        # probes run in float32 whatever the training precision: they measure the model itself
        pc = self.cfg.probe
        # Jacobian norms cost ~jacobian_iters training steps: by default only for the trained weights
        at_final = st.step == self.cfg.train.steps
        iters = pc.jacobian_iters if (pc.jacobian_every_probe or at_final) else 0
        try:
            result = probe(self.model, x, y, iters, pc.jacobian_tol, float64=pc.float64_bounds and self.builtin)
        except (RuntimeError, ValueError) as e:  # LinAlgError: a stream too large or not finite for the Jacobians
            print(f"step {st.step}: Jacobian estimates failed ({type(e).__name__}); probed without them",
                  file=sys.stderr, flush=True)
            result = probe(self.model, x, y, 0, pc.jacobian_tol)
        st.probe_rows += [{"step": st.step, **r} for r in result["rows"]]
        finite = all(torch.isfinite(h).all().item() for h in result["hidden"])
        if finite and self.builtin:
            try:
                rows = bound_rows(self.model, result, pc.adjoint_sequences if at_final else 0, pc.adjoint_max_dim)
            except (RuntimeError, ValueError) as e:  # the exact adjoint check on a blown-up stream
                print(f"step {st.step}: exact adjoint check failed ({type(e).__name__}); bound rows without it",
                      file=sys.stderr, flush=True)
                rows = bound_rows(self.model, result)
            st.bound_rows += [{"step": st.step, **r} for r in rows]
        st.probed.append(st.step)
        st.probe_time += time.perf_counter() - t0
        return finite

    def autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- one training step -------------------------------------------------------------------
    def micro_batches(self):
        """This rank's micro-batches of the step's global batch. Every rank draws the whole batch
        from the same generator and keeps its own contiguous share, so the batch, and hence the
        training, is the same whatever the number of ranks and micro-batches."""
        t, g = self.cfg.train, self.group
        x, y = get_batch(self.corpus.train, t.batch_size, self.cfg.model.block_size, self.train_gen)
        share = t.batch_size // g.world_size
        x, y = x[g.rank * share:(g.rank + 1) * share], y[g.rank * share:(g.rank + 1) * share]
        m = self.micro_batch
        return [(x[i:i + m].to(self.device), y[i:i + m].to(self.device)) for i in range(0, share, m)]

    def train_step(self) -> tuple[float, float]:
        """One optimizer step at ``state.step``: (loss, gradient norm); NaN where not finite,
        in which case the weights are left as they were."""
        t = self.cfg.train
        lr = lr_at(self.state.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        batches = self.micro_batches()
        loss_sum = 0.0
        for i, (x, y) in enumerate(batches):
            # DDP averages gradients over the ranks once, at the last micro-batch
            sync = self.ddp is None or i == len(batches) - 1
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()):
                with self.autocast():
                    _, loss = self.train_fwd(x, y)
                (loss / len(batches)).backward()  # a NaN loss gives NaN gradients: no step below
            loss_sum += loss.item()
        loss_value = self.group.mean(loss_sum / len(batches))
        if not math.isfinite(loss_value):
            return loss_value, float("nan")
        if t.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip).item()
        else:
            gnorm = torch.linalg.vector_norm(torch.stack(
                [p.grad.norm() for p in self.model.parameters() if p.grad is not None])).item()
        if not math.isfinite(gnorm):
            return float("nan"), gnorm
        self.optimizer.step()
        return loss_value, gnorm

    def advance(self) -> dict | None:
        """Train one step and record its metrics row; None if the run diverged."""
        st, t = self.state, self.cfg.train
        t0 = time.perf_counter()
        loss, gnorm = self.train_step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        step_s = time.perf_counter() - t0
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
            row["val_loss"] = self.evaluate()
        eta = (t.steps - st.step) * st.train_time / max(1, st.step - (self.resumed_from or 0))
        bar.update(st.step, row["train_loss"], row["tokens_per_s"], eta)
        if t.ckpt_interval and st.step % t.ckpt_interval == 0 and st.step < t.steps:
            self.save()
        if self.group.any(self.stop_signal is not None) and st.step < t.steps:
            self.save()
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
    @contextlib.contextmanager
    def stop_signals(self):
        """While training: a stop signal is noted, and acted on at the end of the current step."""
        def note(signum, frame):
            self.stop_signal = signum
        try:
            previous = {s: signal.signal(s, note) for s in STOP_SIGNALS}
        except ValueError:  # not the main thread: signals cannot be caught here
            previous = {}
        if EARLY_STOPS:  # arrived during start-up (lnstab.launch.note_stop_signals)
            self.stop_signal = EARLY_STOPS[-1]
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def fit(self) -> dict:
        with self.stop_signals():
            return self._fit()

    def _fit(self) -> dict:
        st, t = self.state, self.cfg.train
        probes_at = set(probe_steps(self.cfg)) if self.cfg.probe.enabled else set()
        bar = Progress(t.steps, t.log_interval, self.out.name, self.verbose)
        if self.group.any(self.stop_signal is not None):  # before any step: the checkpoint holds all
            raise Preempted(f"{self.out}: stopped by a signal before training resumed at step {st.step}; "
                            "the same command resumes")
        while st.status == "running":
            due = st.step in probes_at and st.step not in st.probed
            # rank 0 probes; every rank learns whether the hidden states were finite
            if due and self.group.any(self.group.main and not self.run_probe()):
                self.diverge(st.step)
                break
            if due and not self.group.main:
                st.probed.append(st.step)
            if st.step >= t.steps:
                st.status = "completed"
                break
            row = self.advance()
            if row is None:
                break
            self.after_step(row, bar)
        if self.state.segments:
            self.state.segments[-1]["to_step"] = st.step
        st.summary = self.summary()  # in the final checkpoint: summary.json is checked against it
        self.save()
        return self.finish()

    # -- outputs ---------------------------------------------------------------------------
    def finish(self) -> dict:
        """summary.json, and one line saying how the run ended."""
        summary = self.state.summary or self.summary()
        if not self.group.main:
            return summary
        with self.writing():
            write_json(self.out / "summary.json", summary)
        self.log(f"{self.out.name}: {summary['status']} at step {self.state.step}, "
                 f"val loss {summary['final_val_loss'] or float('nan'):.4f}, {summary['ms_per_step']:.1f} ms/step, "
                 f"probe overhead {100 * summary['probe_overhead']:.1f}%, "
                 f"{summary['model_tflops']:.3f} model TFLOP/s"
                 + (f" (MFU {100 * summary['mfu']:.1f}%)" if summary["mfu"] else "") + ", "
                 f"{summary['bound_violations']} bound violations")
        if self.verbose:
            self.log(self.learned_line(summary["final_val_loss"]))
        return summary

    def learned_line(self, val_loss: float | None) -> str:
        """Whether the run beat its corpus's bigram baseline (lnstab.baselines): one that did not
        has learned less than a table of token pairs and tests nothing about trained models."""
        from .baselines import cross_entropies, learned_status

        base = cross_entropies(self.corpus.train, self.corpus.val, self.cfg.model.vocab_size)
        learned, _ = learned_status(val_loss, base["unigram_nats"], base["bigram_nats"])
        return (f"{self.out.name}: {'learned' if learned else 'did NOT learn'}: validation loss "
                f"{val_loss if val_loss is not None else float('nan'):.4f} against the corpus's bigram baseline "
                f"{base['bigram_nats']:.4f}" + ("" if learned else " (a run above it tests nothing about trained models)"))

    def tables(self) -> dict[str, pd.DataFrame]:
        return run_tables(self.state)

    def write_tables(self) -> None:
        for name, df in self.tables().items():
            write_csv(self.out / name, df)

    def repair_outputs(self) -> list[str]:
        """A finished run: rewrite from the checkpoint every output that is missing or differs."""
        documents = {"summary.json": self.state.summary or self.summary()}
        if self.state.provenance:  # checkpoints older than segments hold no provenance
            documents["provenance.json"] = self.provenance()
        return repair_outputs(self.out, self.tables(), documents)

    def summary(self) -> dict:
        return run_summary(self.state, self.cfg, self.model, self.device, self.resumed_from, self.grid,
                           self.group.world_size)


def train(cfg: RunConfig, out_dir: str | Path, verbose: bool = True, restart_stale: bool = False,
          corpus_meta: dict | None = None, grid: dict | None = None, allow_other_code: bool = False) -> dict:
    """Train one run into ``out_dir``, resuming from its checkpoint if one is there.

    A checkpoint written with another config or on other data is never resumed: with
    ``restart_stale`` it is moved to out/superseded/<n>/ and the run starts again, otherwise a
    RunError says so. A finished run rewrites any output that is missing or differs. Under
    torchrun, rank 0 holds the folder's lock and decides; the other ranks then read the same
    checkpoint (any number of ranks that divides the batch resumes any checkpoint). A run trained
    partly by other code (another version or commit) is resumed only with ``allow_other_code``."""
    out = Path(out_dir)
    refuse_links(out)
    run = Run(cfg, out, verbose, corpus_meta, grid)  # every config and data check before anything is written
    group = run.group
    with run_lock(out) if group.main else contextlib.nullcontext():
        ckpt = out / "ckpt.pt"
        if group.main:
            for stale in out.glob(".*.tmp"):  # a write cut short by a kill: its target is intact
                stale.unlink()
            if ckpt.exists():
                try:
                    run.load(ckpt)
                except StaleCheckpoint as e:
                    if not restart_stale:
                        raise RunError(f"{e}; use a new output folder, or --restart to move the old run "
                                       "aside and train again") from None
                    dest = move_aside(out)
                    run.log(f"{e}: moved the old run to {dest}; training again from step 0")
                    run = Run(cfg, out, verbose, corpus_meta, grid)
            if run.state.status == "running":
                run.begin_segment(allow_other_code)
                write_json(out / "provenance.json", run.provenance())
        group.barrier()  # rank 0 has resumed, moved a stale run aside or found none
        if not group.main and ckpt.exists():
            run.load(ckpt)
        if run.state.status != "running":
            if not group.main:
                return run.summary()
            fixed = run.repair_outputs()
            run.log(f"{out} is already {run.state.status}; " + (f"rewrote {', '.join(fixed)} from the checkpoint"
                                                          if fixed else "nothing to do"))
            return json.loads((out / "summary.json").read_text())
        if run.resumed_from is not None:
            run.log(f"resuming {out} from step {run.state.step} on {group.world_size} process(es)")
        return run.fit()
