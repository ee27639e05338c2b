"""A training group's loop: every member's probes, step, evaluation, checkpoints and divergence,
with the step itself stacked; ``train_group`` is lnstab.train.train for many runs at once."""
from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from pathlib import Path

import torch

from .. import checkpoint
from ..config import RunConfig
from ..launch import catching_stop_signals
from ..measure import probe_now
from ..model import GPT
from ..runfolder import RunError, _diff_keys, refuse_links, run_lock
from ..train import Preempted, Run, already_finished, lr_at, probe_steps, resume_or_restart
from .optimizer import StackedAdamW, clip_per_run
from .plan import shared_config, why_not_stackable


class TrainingGroup:
    """Runs (lnstab.train.Run, each resumed to the same step) trained as one stacked model."""

    def __init__(self, members: list, name: str, verbose: bool = True):
        steps = {m.state.step for m in members}
        if len(steps) != 1:
            raise ValueError(f"group {name}: members at different steps {sorted(steps)}")
        self.members, self.name, self.verbose = members, name, verbose
        self.model = GPT.stack([m.model for m in members])
        self.optimizer = StackedAdamW(self.model, members)
        self.stop_signal: int | None = None
        for m in members:
            if m.state.segments:
                m.state.segments[-1]["group"] = {"name": name, "runs": [x.out.name for x in members]}

    def active(self) -> list:
        return [m for m in self.members if m.state.status == "running"]

    def fit(self) -> list[dict]:
        """Train every member to its train.steps (or its divergence), then each one's outputs; a
        stop signal checkpoints every running member and raises lnstab.train.Preempted."""
        def note(signum):
            self.stop_signal = signum

        with catching_stop_signals(note), contextlib.ExitStack() as views:
            for m in self.members:  # each run's live views (lnstab.watch)
                views.enter_context(contextlib.closing(m.watchers))
                m.watchers.start(m.cfg.to_dict(), m.state.step)
            if self.stop_signal is not None:  # one that came during start-up (EARLY_STOPS)
                raise Preempted(f"group {self.name}: stopped by a signal before training resumed; "
                                "the same command resumes")
            while self.active():
                self.probe_due()
                if not self.active():
                    break
                self.train_step()
                if self.stop_signal is not None and self.active():
                    for m in self.active():
                        checkpoint.save(m)
                    raise Preempted(f"group {self.name}: stopped by {signal.Signals(self.stop_signal).name} "
                                    f"after step {self.active()[0].state.step}; the checkpoints hold it, "
                                    "the same command resumes")
                self.progress()
        return [m.state.summary for m in self.members]

    def progress(self) -> None:
        """One line every train.log_interval steps (of the first running member): the step, the
        running runs' training losses and the time per run-step."""
        act = self.active()
        if not (self.verbose and act):
            return
        st, t = act[0].state, act[0].cfg.train
        if t.log_interval and st.step % t.log_interval == 0 or st.step == t.steps:
            losses = " ".join(f"{m.state.metrics[-1]['train_loss']:.3f}" for m in act)
            ms = 1000 * st.train_time / max(1, st.step - (act[0].resumed_from or 0))
            print(f"[lnstab] group {self.name}: step {st.step}/{t.steps}, {len(act)} run(s) training, "
                  f"{ms:.1f} ms per run-step, train losses {losses}", file=sys.stderr, flush=True)

    def probe_due(self) -> None:
        """Each running member's probe where one is due at its step; a member whose hidden states
        are not finite diverges there (lnstab.train.Run.loop, per member)."""
        for m in self.active():
            st = m.state
            probes_at = set(probe_steps(m.cfg)) if m.cfg.probe.enabled else set()
            if st.step in probes_at and st.step not in st.probed and not probe_now(m):
                m.diverge(st.step)
                m.conclude()
                continue
            if st.step >= m.cfg.train.steps:
                st.status = "completed"
                m.conclude()

    def train_step(self) -> None:
        """One step of every running member (stacked), each member's row, divergence and after-step work."""
        act = self.active()
        t0 = time.perf_counter()
        batches = {id(m): m.micro_batches()[0] for m in act}
        x0, y0 = next(iter(batches.values()))
        # a member that has ended keeps a slice; it computes on a copy of a running member's batch
        xs, ys = zip(*(batches.get(id(m), (x0, y0)) for m in self.members))
        lrs = [lr_at(m.state.step, m.cfg) for m in self.members]
        for m, lr in zip(self.members, lrs):  # each run's param groups read as in its own run
            for g in m.optimizer.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
        self.optimizer.zero_grad()
        _, losses = self.model(torch.stack(xs), torch.stack(ys))
        losses.sum().backward()  # each run's parameters receive its own loss's gradient
        losses = losses.tolist()
        gnorms = clip_per_run(self.optimizer.params, self.members)
        step_s = (time.perf_counter() - t0) / len(act)
        rows = {}
        for r, m in enumerate(self.members):
            if m.state.status != "running":
                continue
            loss, gnorm = losses[r], gnorms[r]
            if not math.isfinite(loss):
                gnorm = float("nan")
            elif not math.isfinite(gnorm):
                loss = float("nan")
            row = m.record_step(loss, gnorm, step_s)
            if row is None:  # diverged: its outputs hold the weights before this step
                m.conclude()
            else:
                rows[id(m)] = row
        t1 = time.perf_counter()
        # a run that has ended keeps its final weights: no gradient and a zero step (p * 1 + 0)
        ended = [r for r, m in enumerate(self.members) if m.state.status != "running"]
        if ended:
            for p in self.optimizer.params:
                p.grad[ended] = 0.0
            lrs = [0.0 if r in ended else lr for r, lr in enumerate(lrs)]
        self.optimizer.step(lrs)
        share = (time.perf_counter() - t1) / max(1, len(rows))
        for m in self.active():
            m.state.train_time += share
            m.after_step(rows[id(m)], m.progress_bar)


def train_group(cfgs: list[RunConfig], out_dirs: list[str | Path], name: str = "group", verbose: bool = True,
                restart_stale: bool = False, corpus_meta: dict | None = None, grids: list | None = None,
                allow_other_code: bool = False, watch=()) -> list[dict]:
    """Train runs (configs into their folders) as training groups, resuming each from its own
    checkpoint; the lnstab.train.train of many runs at once, with the same folder, lock, resume and
    stale-checkpoint rules. Members at different steps train as one group per step reached; a
    finished member only has its outputs repaired. Returns each run's summary, in order."""
    if len(cfgs) != len(out_dirs):
        raise ValueError(f"{len(cfgs)} configs for {len(out_dirs)} folders")
    for cfg in cfgs:
        if (reason := why_not_stackable(cfg)) is not None:
            raise RunError(f"group {name}: {reason} trains only alone (lnstab train)")
    grids = grids or [None] * len(cfgs)
    outs = [Path(o) for o in out_dirs]
    for out in outs:
        refuse_links(out)

    def make(i):
        return Run(cfgs[i], outs[i], verbose, corpus_meta, grids[i], watch=watch)

    fresh = [make(i) for i in range(len(cfgs))]  # every check before anything is written
    for run in fresh[1:]:
        if (diff := _diff_keys(shared_config(fresh[0].cfg), shared_config(run.cfg))):
            raise RunError(f"group {name}: {run.out} differs from {outs[0]} in {', '.join(diff)}, which the runs "
                           "of a group share (per-run values: lnstab.groups.PER_RUN_KEYS)")
    with contextlib.ExitStack() as locks:
        members = []
        for i, out in enumerate(outs):
            locks.enter_context(run_lock(out))
            members.append(resume_or_restart(fresh[i], restart_stale, allow_other_code, lambda i=i: make(i)))
        running = [m for m in members if m.state.status == "running"]
        for m in members:
            if m.state.status != "running":
                already_finished(m)
        by_step: dict[int, list] = {}
        for m in running:
            by_step.setdefault(m.state.step, []).append(m)
        for step, part in sorted(by_step.items()):
            if verbose:
                print(f"[lnstab] group {name}: training {len(part)} run(s) together from step {step}: "
                      + ", ".join(m.out.name for m in part), file=sys.stderr, flush=True)
            for m in part:
                m.progress_bar.enabled = False  # the group reports progress for all of them
            TrainingGroup(part, name, verbose).fit()
        return [json.loads((m.out / "summary.json").read_text()) for m in members]
