"""Watching a long run live: the numbers of metrics.csv at every step and a summary of every
probe, mirrored to TensorBoard event files and/or a Weights & Biases run in offline mode.

Optional (``lnstab train --watch tensorboard``, a study's ``watch: [tensorboard, wandb]``; the
extras ``[tensorboard]`` and ``[wandb]``). The CSV files stay the record: a watcher only copies
numbers the run has already written down, on rank 0, and never changes one. It is not part of a
run's config either, so turning it on or off neither retrains a run nor blocks a resume.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .config import ConfigError

STEP_KEYS = ("train_loss", "val_loss", "learning_rate", "grad_norm", "tokens_per_s")
# per probe: each quantity at the top of the stream x^(K) and its largest value over the points
PROBE_KEYS = ("mean_abs", "var_entry", "var_data", "mean_norm", "max_abs", "adjoint_norm")
STREAM_POINTS = ("embed", "attn", "mlp")


def probe_summary(rows: list[dict]) -> dict[str, float]:
    """{"probe/top/<q>": q at x^(K), "probe/max/<q>": max over k of q at x^(k)} of a probe's rows."""
    stream = [r for r in rows if r["point"] in STREAM_POINTS and r["quantity"] in PROBE_KEYS]
    if not stream:
        return {}
    top = max(r["sublayer"] for r in stream)
    out = {f"probe/top/{r['quantity']}": r["value"] for r in stream if r["sublayer"] == top}
    for q in PROBE_KEYS:
        values = [r["value"] for r in stream if r["quantity"] == q]
        if values:
            out[f"probe/max/{q}"] = max(values)
    return out


def step_values(row: dict) -> dict[str, float]:
    """A metrics.csv row as named scalars (the validation loss only where it was evaluated)."""
    return {f"train/{k}": row[k] for k in STEP_KEYS if row[k] == row[k]}  # NaN != NaN: not evaluated


class TensorBoard:
    """Event files in <run>/tensorboard/ (``tensorboard --logdir results/runs``)."""

    def __init__(self, out: Path, config: dict, first_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("watch: tensorboard needs the tensorboard package (pip install -e '.[tensorboard]')") \
                from None
        # a resumed run discards what the killed process wrote after its checkpoint
        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=first_step or None)
        if not first_step:
            self.writer.add_text("config", f"```\n{config}\n```", 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbOffline:
    """A W&B run in offline mode under <run>/wandb/ (``wandb sync`` uploads it later, if wanted):
    nothing leaves the machine while the study runs."""

    def __init__(self, out: Path, config: dict, first_step: int):
        try:
            import wandb
        except ImportError:
            raise ConfigError("watch: wandb needs the wandb package (pip install -e '.[wandb]')") from None
        self.run = wandb.init(project="lnstab", name=out.name, id=out.name, dir=str(out), config=config,
                              mode="offline", resume="allow")

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


WATCHERS = {"tensorboard": TensorBoard, "wandb": WandbOffline}


def check(names) -> tuple[str, ...]:
    """The watcher names, checked (a ConfigError naming an unknown one)."""
    names = tuple(names or ())
    unknown = [n for n in names if n not in WATCHERS]
    if unknown:
        raise ConfigError(f"watch: unknown {', '.join(map(repr, unknown))} (known: {', '.join(WATCHERS)})")
    return names


class Watchers:
    """The run's watchers, checked when the run is built and started once it knows its first
    step (none: every call is a no-op). A watcher that fails (an unusable folder, a full disk, a
    library error) is reported in one line and dropped: it only mirrors numbers, so the run goes on."""

    def __init__(self, names, out: Path):
        self.names, self.out, self.open = check(names), Path(out), []

    def _drop(self, name: str, what: str, e: Exception) -> None:
        print(f"lnstab: watch {name}: {what} failed ({type(e).__name__}: {str(e)[:200]}); the run goes on "
              "without it (metrics.csv and probes.csv are the record)", file=sys.stderr, flush=True)

    def start(self, config: dict, first_step: int) -> None:
        self.open = []
        for n in self.names:
            try:
                self.open.append((n, WATCHERS[n](self.out, config, first_step)))
            except ConfigError:  # the package is missing: the user's setup, said as such
                raise
            except Exception as e:
                self._drop(n, "start", e)

    def _each(self, what: str, call) -> None:
        kept = []
        for n, w in self.open:
            try:
                call(w)
                kept.append((n, w))
            except Exception as e:
                self._drop(n, what, e)
        self.open = kept

    def step(self, row: dict) -> None:
        self._each("logging a step", lambda w: w.log(step_values(row), row["step"]))

    def probe(self, step: int, rows: list[dict]) -> None:
        self._each("logging a probe", lambda w: w.log(probe_summary(rows), step))

    def close(self) -> None:
        self._each("closing", lambda w: w.close())
        self.open = []
