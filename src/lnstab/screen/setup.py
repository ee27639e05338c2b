"""What the screen builds and trains, without torch: its defaults, its config and its depths, so
that a study's ``screen`` section is checked when the workflow is parsed (lnstab.screen)."""
from __future__ import annotations

import copy
from pathlib import Path

from ..config import ConfigError, RunConfig, load_config, read_yaml

# the short training at each: half-decades around the default study's rates (Post-LN learns at
# 1e-3 to 2e-3 and collapses at 1e-2)
SCREEN_LRS = (1e-3, 3e-3, 1e-2)
LR_NOT_USED = (f"the screen trains at each of its learning rates, not at one ({', '.join(f'{x:g}' for x in SCREEN_LRS)} "
               "by default; choose them with lnstab screen --lrs)")
# the screen's model and training unless the config says otherwise: the default study's width,
# 8 blocks as the largest depth, 600 steps
SCREEN_BASE = {
    "model": {"n_layer": 8, "d_model": 32, "n_head": 4, "block_size": 32},
    "train": {"steps": 600, "batch_size": 16, "warmup_steps": 30, "eval_interval": 100,
              "eval_batches": 4, "ckpt_interval": 0, "log_interval": 100},
    "probe": {"enabled": False, "batch_size": 8, "jacobian_iters": 16},
}


def screen_config(path: str | Path | dict | None, overrides: list[str] = ()) -> RunConfig:
    """SCREEN_BASE, then the YAML file at ``path`` (or a study's ``screen.base`` dict), then
    ``key=value`` overrides. A learning rate is refused: the screen trains at each of its own
    (``lnstab screen --lrs``), and a single one would be silently unused."""
    base = copy.deepcopy(SCREEN_BASE)
    if path is not None:
        # a study's screen.base is given as it stands
        doc = path if isinstance(path, dict) else read_yaml(Path(path).read_text(encoding="utf-8"), str(path)) or {}
        path = "screen.base" if isinstance(path, dict) else path
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: a run config is a mapping of sections (model, train, ...), "
                              f"got a YAML {type(doc).__name__}")
        if isinstance(doc.get("train"), dict) and "lr" in doc["train"]:
            raise ConfigError(f"{path}: train.lr: {LR_NOT_USED}")
        for section, values in doc.items():
            if isinstance(values, dict):
                base.setdefault(section, {}).update(values)
            else:
                base[section] = values
    if any(o.split("=", 1)[0].strip() == "train.lr" for o in overrides):
        raise ConfigError(f"--set train.lr: {LR_NOT_USED}")
    return load_config(None, overrides, base=base)


def screen_depths(n_layer: int) -> list[int]:
    """The three depths the screen builds: L/4, L/2 and L blocks."""
    if n_layer < 4:
        raise ConfigError(f"model.n_layer: the screen fits growth over 3 depths (L/4, L/2, L) and needs L >= 4, "
                         f"got {n_layer}")
    return [n_layer // 4, n_layer // 2, n_layer]
