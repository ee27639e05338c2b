"""Which runs of a study can train together, and in which groups (torch-free: the workflow plans its
training jobs while it parses)."""
from __future__ import annotations

import hashlib
import json
import math

from ..config import RunConfig

# what may differ between the runs of one group; every other key of a run's config is shared
PER_RUN_KEYS = {
    "seed": None,
    "model": ("dt", "fold_dt", "last_map_init_scale", "normalised_branch_init"),
    "train": ("lr", "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip", "eval_interval",
              "eval_batches", "ckpt_interval", "log_interval"),
    "probe": None,  # every probe setting: probes run on each run's own view
}


def shared_config(cfg: RunConfig) -> dict:
    """The part of a run's config that every run of its group has in common."""
    shared = {}
    for section, values in cfg.to_dict().items():
        per_run = PER_RUN_KEYS.get(section, ())
        if per_run is None:
            continue
        shared[section] = {k: v for k, v in values.items() if k not in per_run} if isinstance(values, dict) else values
    return shared


def group_key(cfg: RunConfig) -> str:
    """Runs with the same key can train as one group: a short digest of the shared config."""
    text = json.dumps(shared_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def why_not_stackable(cfg: RunConfig) -> str | None:
    """None if the run can train in a group; else the setting that needs the single-run path."""
    t = cfg.train
    if t.grad_accum != 1:
        return f"train.grad_accum={t.grad_accum}"
    if t.precision != "fp32":
        return f"train.precision={t.precision}"
    if t.compile:
        return "train.compile"
    if t.activation_checkpointing:
        return "train.activation_checkpointing"
    return None


def group_size(study: dict, processes: int = 1) -> int:
    """The most runs per training job of a study: its groups.max_runs (schema default 8), or 1 where
    a job trains one run on several processes (torch.distributed)."""
    return (study.get("groups") or {}).get("max_runs", 8) if processes == 1 else 1


def group_label(cfg: RunConfig) -> str:
    """A readable name for the runs of one key: placement and depth (and the norm where not LayerNorm)."""
    m = cfg.model
    return f"{m.placement}-L{m.n_layer}" + ("" if m.norm == "layernorm" else f"-{m.norm}")


def plan_groups(configs: dict[str, RunConfig], max_runs: int) -> dict[str, list[str]]:
    """Runs (name -> config) into groups of at most ``max_runs`` runs sharing a key: name -> members,
    members in the order given. Names are readable (``pre-L16-g0``; the key is added where two keys
    share a label); a run that cannot be stacked (why_not_stackable) is a group of one."""
    if max_runs < 1:
        raise ValueError(f"groups.max_runs must be at least 1, not {max_runs}")
    by_key: dict[str, list[str]] = {}
    labels: dict[str, str] = {}
    for name, cfg in configs.items():
        key = group_key(cfg) if why_not_stackable(cfg) is None else f"alone-{name}"
        by_key.setdefault(key, []).append(name)
        labels[key] = group_label(cfg) if why_not_stackable(cfg) is None else key
    shared = {lab for lab in labels.values() if list(labels.values()).count(lab) > 1}
    groups = {}
    for key, names in by_key.items():
        label = labels[key] + (f"-{key}" if labels[key] in shared else "")
        n = math.ceil(len(names) / max_runs)
        size = math.ceil(len(names) / n)  # balanced: 9 runs at most 8 -> 5 + 4, not 8 + 1
        for i in range(n):
            groups[f"{label}-g{i}" if not key.startswith("alone-") else key] = names[i * size:(i + 1) * size]
    return groups
