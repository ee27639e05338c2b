"""Run configuration: nested dataclasses with defaults, loaded from YAML, checked before training.

Every key has a default; a YAML file or a ``--set section.key=value`` override replaces it.
Unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the key.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PLACEMENTS = ("pre", "peri", "post", "none", "output", "mix", "deepnorm")
# placements lnstab inspect detects in checkpoints but lnstab does not train: GPT-NeoX's attention
# and MLP acting on the same x (one residual step per block)
MEASURED_ONLY_PLACEMENTS = ("parallel",)
NORMS = ("layernorm", "rmsnorm")


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key."""


@dataclass
class ModelConfig:
    placement: str = "pre"  # where the norm sits: pre | peri | post | none | output | mix | deepnorm (lnstab.model)
    norm: str = "layernorm"  # layernorm | rmsnorm (no centring, no bias: LLaMA, OLMo 2, Gemma)
    mix_fraction: float = 0.25  # mix: the first ceil(fraction * n_layer) blocks are Post-LN, the rest Pre-LN
    dt: float = 1.0  # residual step: x <- x + dt * branch(x)
    n_layer: int = 4  # blocks; each has 2 sub-layers (attention, MLP)
    n_head: int = 4  # attention heads (d_model must be divisible by it)
    d_model: int = 64  # width of the residual stream
    block_size: int = 64  # context length
    vocab_size: int | None = None  # None: taken from the tokenizer
    bias: bool = True  # biases in Linear and LayerNorm
    ln_eps: float = 1e-5  # LayerNorm eps, inside the square root
    fused_attention: bool = True  # scaled_dot_product_attention; False: explicit softmax(QK^T)V
    gelu: str = "exact"  # exact | tanh: the MLP's GELU (tanh: GPT-2's approximation, for its checkpoints)
    # GPT-2 scales the init of every branch output projection by 1/sqrt(2 n_layer). Where an
    # output LN normalises the branch (Peri-LN) that scaling only pushes the LN's input variance
    # below ln_eps (docs/bounds.md, "The Peri-LN eps regime"). There: proj = GPT-2's rule as is;
    # gain = projection at std 0.02 and the output LN's gain starting at 1/sqrt(2 n_layer);
    # none = no depth scaling at all. (The comment ending a field's line is its description in
    # `lnstab show-config`.)
    normalised_branch_init: str = "gain"  # gain | proj | none: where 1/sqrt(2L) goes in Peri-LN
    # The last map of a branch is f.proj, or the output norm where a norm ends the branch (peri,
    # output). Its init scale is a tuning knob every placement gets alike (config/tuning.yaml).
    last_map_init_scale: float = 1.0  # multiplies the init of every branch's last map (weight and bias)
    # Under AdamW, x + dt * (W h + c) trains exactly like the dt = 1 model whose last map (W, c)
    # starts dt times smaller and trains at lr * dt, weight decay / dt and eps / dt (docs/theory.md).
    fold_dt: bool = False  # run dt as that reparametrisation: step 1, last maps at init x dt, lr x dt, wd / dt, eps / dt


@dataclass
class DataConfig:
    source: str = "shakespeare"  # shakespeare | text | bin
    paths: list[str] = field(default_factory=list)  # UTF-8 files for source=text
    dir: str | None = None  # folder with train.bin/val.bin (uint16) for source=bin
    tokenizer: str = "char"  # char | gpt2 (tiktoken; needs its vocabulary available offline)
    val_fraction: float = 0.1  # tail of the corpus held out for validation


@dataclass
class TrainConfig:
    steps: int = 200  # optimizer steps
    batch_size: int = 16  # sequences per optimizer step, over all processes and micro-batches
    grad_accum: int = 1  # micro-batches per step on each process (batch_size / (grad_accum * processes) each)
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # cosine decays lr to lr * min_lr_ratio
    warmup_steps: int = 20  # linear warmup from lr/warmup_steps to lr
    weight_decay: float = 0.1  # applied to matrices only
    beta1: float = 0.9  # AdamW first-moment decay, in [0, 1)
    beta2: float = 0.95  # AdamW second-moment decay, in [0, 1)
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 50  # validation loss every N steps (and at the end)
    eval_batches: int = 4  # validation batches per evaluation (fixed, re-seeded each time)
    log_interval: int = 10  # progress line every N steps (when not on a terminal)
    ckpt_interval: int = 50  # checkpoint every N steps (and at the end); 0: only at the end
    device: str = "cpu"  # cpu | cuda | auto
    precision: str = "fp32"  # fp32 | bf16 (autocast, GPU)
    tf32: bool = False  # TensorFloat-32 matmuls (GPU)
    compile: bool = False  # torch.compile the model (GPU)
    activation_checkpointing: bool = False  # recompute each sub-layer in the backward pass: less memory, ~1/3 more compute
    deterministic: bool = True  # seeded RNGs and deterministic algorithms: byte-identical reruns
    threads: int = 1  # torch.set_num_threads; from here, never from the environment


@dataclass
class ProbeConfig:
    enabled: bool = True  # probes and bounds (never change training)
    interval: int = 50  # probe every N steps; step 0 and the final step always; 0: only those
    batch_size: int = 8  # sequences in the fixed probe batch
    jacobian_iters: int = 32  # at most this many Lanczos products (J^T J v) per Jacobian norm; 0 skips
    jacobian_tol: float = 0.03  # a sub-layer stops once its Lanczos residual bounds are below this (relative)
    jacobian_every_probe: bool = False  # False: Jacobian norms at the final step only (trained weights)
    float64_bounds: bool = True  # bound rows measure a float64 copy of the model (rounding allowance of float64)
    adjoint_sequences: int = 1  # probe sequences whose exact per-step adjoint inequality is checked at the final step; 0 skips
    adjoint_max_dim: int = 2048  # largest context x width whose step Jacobians are formed densely (exact norms)
    adjoint_lanczos_products: int = 128  # above it: Lanczos products per certified norm (docs/bounds.md, B3); 0 skips


@dataclass
class RunConfig:
    seed: int = 0  # model init and training batches
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "model.placement": PLACEMENTS,
    "model.norm": NORMS,
    "model.normalised_branch_init": ("gain", "proj", "none"),
    "model.gelu": ("exact", "tanh"),
    "data.source": ("shakespeare", "text", "bin"),
    "data.tokenizer": ("char", "gpt2"),
    "train.device": ("cpu", "cuda", "auto"),
    "train.precision": ("fp32", "bf16"),
}
POSITIVE = {
    "model.dt", "model.last_map_init_scale", "model.n_layer", "model.n_head", "model.d_model", "model.block_size",
    "model.vocab_size", "model.ln_eps", "train.steps", "train.batch_size", "train.lr",
    "train.grad_accum", "train.eval_interval", "train.eval_batches", "train.log_interval", "train.threads",
    "probe.batch_size",
}
NON_NEGATIVE = {
    "train.warmup_steps", "train.weight_decay", "train.grad_clip", "train.ckpt_interval",
    "train.min_lr_ratio", "probe.interval", "probe.jacobian_iters", "probe.jacobian_tol",
    "probe.adjoint_sequences", "probe.adjoint_max_dim", "probe.adjoint_lanczos_products",
}


# [low, high): Adam's betas below 1; the cosine schedule ends at or below lr; a fraction of the blocks
UNIT_RANGES = {"train.beta1": (0.0, 1.0), "train.beta2": (0.0, 1.0), "train.min_lr_ratio": (0.0, 1.0 + 1e-12),
               "model.mix_fraction": (0.0, 1.0 + 1e-12)}


def _check_value(key: str, value, annotation: str):
    """Return value checked against the field's annotation (a string here), or raise naming key."""
    kinds = [a.strip() for a in annotation.split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"{key}: a value is required")
    kind = kinds[0]
    if kind == "float" and isinstance(value, str):
        try:  # YAML 1.1 reads 3e-3 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if kind == "int" and not isinstance(value, bool) and isinstance(value, int):
        return value
    if kind == "float" and not isinstance(value, bool) and isinstance(value, (int, float)):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "list[str]":
        value = [value] if isinstance(value, str) else value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    expected = {"int": "an integer", "float": "a number", "bool": "true or false",
                "str": "a string", "list[str]": "a list of strings"}[kind]
    raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _apply(section, prefix: str, values: dict):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(section)}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in known:
            raise ConfigError(f"unknown config key '{key}' (known: {', '.join(sorted(known))})")
        current = getattr(section, name)
        if dataclasses.is_dataclass(current):
            _apply(current, key + ".", value)
        else:
            setattr(section, name, _check_value(key, value, known[name].type))


def validate(cfg: RunConfig) -> RunConfig:
    """Range and consistency checks that need more than one key."""
    flat = {}
    for sec in ("model", "data", "train", "probe"):
        for k, v in dataclasses.asdict(getattr(cfg, sec)).items():
            flat[f"{sec}.{k}"] = v
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {flat[key]!r}")
    for key, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    for key in POSITIVE:
        if flat[key] is not None and not flat[key] > 0:
            raise ConfigError(f"{key}: must be > 0, got {flat[key]!r}")
    for key, (lo, hi) in UNIT_RANGES.items():
        if not lo <= flat[key] < hi:
            raise ConfigError(f"{key}: must be in [{lo:g}, {hi:g}), got {flat[key]!r}")
    for key in NON_NEGATIVE:
        if not flat[key] >= 0:
            raise ConfigError(f"{key}: must be >= 0, got {flat[key]!r}")
    m = cfg.model
    if m.d_model % m.n_head:
        raise ConfigError(f"model.d_model: {m.d_model} is not divisible by model.n_head={m.n_head}")
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction: must be in (0, 1), got {cfg.data.val_fraction}")
    if cfg.data.source == "text" and not cfg.data.paths:
        raise ConfigError("data.paths: source 'text' needs at least one file")
    if cfg.data.source == "bin" and not cfg.data.dir:
        raise ConfigError("data.dir: source 'bin' needs the folder holding train.bin and val.bin")
    if cfg.data.source == "bin" and m.vocab_size is None:
        raise ConfigError("model.vocab_size: source 'bin' needs the vocabulary size (50257 for GPT-2)")
    if cfg.train.batch_size % cfg.train.grad_accum:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} is not divisible by "
                          f"train.grad_accum={cfg.train.grad_accum}")
    if cfg.train.warmup_steps > cfg.train.steps:
        raise ConfigError(f"train.warmup_steps: {cfg.train.warmup_steps} exceeds train.steps={cfg.train.steps}")
    if cfg.train.precision == "bf16" and cfg.train.device == "cpu":
        raise ConfigError("train.precision: bf16 autocast is for GPUs; use fp32 on device cpu")
    if not 0 <= cfg.seed < SEED_LIMIT:
        raise ConfigError(f"seed: must be an integer in [0, 2**32) (numpy's seed range), got {cfg.seed}")
    return cfg


SEED_LIMIT = 2 ** 32


def check_batch_split(train: TrainConfig, processes: int) -> None:
    """The global batch splits into grad_accum micro-batches on each of ``processes`` ranks."""
    share = train.grad_accum * processes
    if train.batch_size % share:
        raise ConfigError(f"train.batch_size: {train.batch_size} sequences do not split into "
                          f"train.grad_accum={train.grad_accum} micro-batches on each of {processes} processes "
                          "(resources.train.processes in a study)")


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                    key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(text: str, where: str):
    """Parse YAML strictly (a key given twice is an error), turning a syntax error into a
    ConfigError naming ``where`` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{where}{at}: YAML syntax error: {problem}") from None


def parse_override(text: str) -> tuple[list[str], object]:
    """'model.dt=0.5' -> (['model', 'dt'], 0.5); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value, e.g. model.dt=0.5")
    key, raw = text.split("=", 1)
    return key.strip().split("."), read_yaml(raw, f"--set {text}") if raw.strip() else None


def nest(path: list[str], value) -> dict:
    out = value
    for part in reversed(path):
        out = {part: out}
    return out


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    """Defaults, then the YAML file (or dict ``base``), then ``key=value`` overrides, then checks."""
    cfg = RunConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        data = read_yaml(text, str(path)) or {}
        _apply(cfg, "", data)
    if base is not None:
        _apply(cfg, "", base)
    for text in overrides:
        keys, value = parse_override(text)
        _apply(cfg, "", nest(keys, value))
    return validate(cfg)


def descriptions() -> dict[str, str]:
    """'section.key' -> the comment that ends the key's line in this file: the one place a key
    is described (shown by ``lnstab show-config``)."""
    import inspect
    import sys

    out, section = {}, None
    names = {"ModelConfig": "model.", "DataConfig": "data.", "TrainConfig": "train.", "ProbeConfig": "probe.",
             "RunConfig": ""}
    for line in inspect.getsource(sys.modules[__name__]).splitlines():
        m = re.match(r"^class (\w+)", line)
        if m:
            section = names.get(m.group(1))
            continue
        m = re.match(r"^    (\w+): [^=]+=.*?#\s*(.+)$", line)
        if section is not None and m:
            out[section + m.group(1)] = m.group(2).strip()
    return out


def described_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML, each key with its one-line description as a comment."""
    notes = descriptions()
    lines = []

    def emit(d: dict, prefix: str, indent: str):
        for k, v in d.items():
            if isinstance(v, dict):
                lines.append(f"{indent}{k}:")
                emit(v, f"{prefix}{k}.", indent + "  ")
                continue
            value = yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").removesuffix("...").strip()
            note = notes.get(prefix + k)
            lines.append(f"{indent}{k}: {value}" + (f"  # {note}" if note else ""))
    emit(cfg.to_dict(), "", "")
    return "\n".join(lines) + "\n"
