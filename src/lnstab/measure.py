"""What a training run measures while it trains, on rank 0: the validation loss and the probes
(hidden-state moments, adjoints, gradients, Jacobian estimates; lnstab.probes) with their bound
rows (lnstab.bounds). Probes run in float32 whatever the training precision: they measure the
model itself, on the run's fixed probe batch."""
from __future__ import annotations

import contextlib
import sys
import time

import numpy as np
import torch

from .bounds import bound_rows
from .data import get_batch
from .probes import probe

# offset that gives the evaluation generator its own stream (re-seeded at every evaluation)
EVAL_SEED_OFFSET = 1_000_003


def autocast(run):
    """bf16 autocast where train.precision says so (training and evaluation, never probes)."""
    if run.cfg.train.precision == "bf16":
        return torch.autocast(run.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(run) -> float:
    """The mean validation loss over train.eval_batches batches, the same batches at every call."""
    t0 = time.perf_counter()
    run.model.eval()
    gen = torch.Generator().manual_seed(run.cfg.seed + EVAL_SEED_OFFSET)
    losses = []
    for _ in range(run.cfg.train.eval_batches):
        x, y = (t.to(run.device) for t in get_batch(run.corpus.val, run.cfg.train.batch_size,
                                                    run.cfg.model.block_size, gen))
        with autocast(run):
            losses.append(run.fwd(x, y)[1].item())
    run.model.train()
    run.state.eval_time += time.perf_counter() - t0
    return float(np.mean(losses))


def probe_now(run) -> bool:
    """Probe at the current step and record the rows; False if the hidden states are not finite."""
    t0 = time.perf_counter()
    st, pc = run.state, run.cfg.probe
    x, y = (t.to(run.device) for t in run.probe_batch)
    # Jacobian norms cost ~jacobian_iters training steps: by default only for the trained weights
    at_final = st.step == run.cfg.train.steps
    iters = pc.jacobian_iters if (pc.jacobian_every_probe or at_final) else 0
    try:
        result = probe(run.model, x, y, iters, pc.jacobian_tol, float64=pc.float64_bounds and run.builtin)
    except (RuntimeError, ValueError) as e:  # LinAlgError: a stream too large or not finite for the Jacobians
        _warn(st.step, f"Jacobian estimates failed ({type(e).__name__}); probed without them")
        result = probe(run.model, x, y, 0, pc.jacobian_tol)
    st.probe_rows += [{"step": st.step, **r} for r in result["rows"]]
    run.watchers.probe(st.step, result["rows"])
    finite = all(torch.isfinite(h).all().item() for h in result["hidden"])
    if finite and run.builtin:  # a screened block of the user's own has no bounds
        st.bound_rows += [{"step": st.step, **r} for r in _bound_rows(run, result, at_final)]
    st.probed.append(st.step)
    st.probe_time += time.perf_counter() - t0
    return finite


def _bound_rows(run, result: dict, at_final: bool) -> list[dict]:
    """The bound rows of a probe; the exact adjoint inequalities at the final probe only."""
    pc = run.cfg.probe
    try:
        return bound_rows(run.model, result, pc.adjoint_sequences if at_final else 0, pc.adjoint_max_dim,
                          pc.adjoint_lanczos_products)
    except (RuntimeError, ValueError) as e:  # the exact adjoint check on a blown-up stream
        _warn(run.state.step, f"exact adjoint check failed ({type(e).__name__}); bound rows without it")
        return bound_rows(run.model, result)


def _warn(step: int, msg: str) -> None:
    print(f"step {step}: {msg}", file=sys.stderr, flush=True)
