"""The experiment grid: sweeps of placement x depth x dt x weight decay x lr x seed (x the
last maps' init scale x dt folded into them), and run ids.

A sweep is a mapping from grid keys to lists; the grid is the union of the sweeps' cartesian
products. Keys a sweep leaves out take the value of the base config. A sweep with a ``demo``
key (a sentence saying what it demonstrates) holds instability demonstrations: its runs get
``role`` = ``instability_demo`` and are not expected to learn (lnstab.claims). Every run has an id that
names all its grid values, e.g. ``peri-L12-dt0.1-wd0.1-lr0.002-s0``, and a folder of that name.
"""
from __future__ import annotations

import itertools

from .config import ConfigError, RunConfig, _apply, load_config, nest, validate

# grid key -> run-config key
GRID_KEYS = {
    "placement": "model.placement",
    "n_layer": "model.n_layer",
    "dt": "model.dt",
    "weight_decay": "train.weight_decay",
    "lr": "train.lr",
    "seed": "seed",
    "init_scale": "model.last_map_init_scale",
    "fold_dt": "model.fold_dt",
}
# grid keys a run id names only where they differ from these (ids of older studies stay valid)
ID_DEFAULTS = {"init_scale": 1.0, "fold_dt": False}


def _get(cfg: RunConfig, dotted: str):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def run_id(params: dict) -> str:
    p = {**ID_DEFAULTS, **params}
    return (f"{p['placement']}-L{p['n_layer']}-dt{p['dt']:g}-wd{p['weight_decay']:g}"
            f"-lr{p['lr']:g}-s{p['seed']}" + (f"-i{p['init_scale']:g}" if p["init_scale"] != 1 else "")
            + ("-fold" if p["fold_dt"] else ""))


def expand(sweeps: list[dict], base: dict | None = None) -> dict[str, dict]:
    """{run_id: grid params} for every run of the sweeps, in a stable order."""
    defaults = load_config(base=base or {})
    runs, where = {}, {}  # run id -> params, and the first sweep that made it
    if not isinstance(sweeps, list) or not sweeps:
        raise ConfigError(f"sweeps: expected a non-empty list of sweeps such as [{{placement: [pre], n_layer: [4]}}], "
                          f"got {sweeps!r}")
    for i, sweep in enumerate(sweeps):
        if not isinstance(sweep, dict):
            raise ConfigError(f"sweeps[{i}]: expected a mapping of grid keys to lists, got {sweep!r}")
        sweep = dict(sweep)
        role = "instability_demo" if sweep.pop("demo", None) else "study"
        unknown = set(sweep) - set(GRID_KEYS)
        if unknown:
            raise ConfigError(f"sweeps[{i}]: unknown grid key(s) {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(GRID_KEYS)})")
        axes = {k: sweep.get(k, [_get(defaults, v)]) for k, v in GRID_KEYS.items()}
        for k, values in axes.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweeps[{i}].{k}: expected a non-empty list, got {values!r}")
        for combo in itertools.product(*axes.values()):
            params = dict(zip(axes, combo))
            for k in ("dt", "weight_decay", "lr", "init_scale"):
                try:
                    params[k] = float(params[k])
                except (TypeError, ValueError):
                    raise ConfigError(f"sweeps[{i}].{k}: expected numbers, got {params[k]!r}") from None
            if not isinstance(params["fold_dt"], bool):
                raise ConfigError(f"sweeps[{i}].fold_dt: expected true or false, got {params['fold_dt']!r}")
            rid = run_id(params)
            both = f"sweeps[{where.get(rid)}] and sweeps[{i}]"
            if rid in runs and {k: runs[rid][k] for k in params} != params:
                raise ConfigError(f"{both}: grid points {runs[rid]} and {params} share the run id {rid} "
                                  "(values equal to 6 significant digits): make them differ there")
            if rid in runs and runs[rid]["role"] != role:
                raise ConfigError(f"{both}: run {rid} has role {runs[rid]['role']} in one and {role} in the other; "
                                  "a run is either a demonstration or a study run")
            runs[rid] = {**params, "role": role}
            where.setdefault(rid, i)
    return dict(sorted(runs.items()))


def run_config(params: dict, base: dict | None = None, extra: dict | None = None) -> RunConfig:
    """The full, checked config of one grid point: base, then ``extra`` (a nested dict), then
    the grid values, all passed as data."""
    cfg = load_config(base=base or {})
    if extra:
        _merge(cfg, extra)
    for k, v in params.items():
        if k in GRID_KEYS:
            _merge(cfg, nest(GRID_KEYS[k].split("."), v))
    return validate(cfg)


def _merge(cfg: RunConfig, values: dict) -> None:
    _apply(cfg, "", values)
