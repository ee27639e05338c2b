"""Pretrained checkpoints: a transformers GPT-2 loaded into lnstab's own GPT, and ``lnstab inspect``.

GPT-2 (gpt2 to gpt2-xl) is exactly lnstab's Pre-LN GPT at dt = 1 with biases, tied embeddings,
LayerNorm eps ``layer_norm_epsilon`` and GELU's tanh approximation (``model.gelu: tanh``); its
four Conv1D weights per block are stored transposed to nn.Linear's. Loaded this way, every probe,
bound and Jacobian estimate of the package runs unchanged on it.

``inspect`` measures a checkpoint folder (transformers' ``save_pretrained``) on a text: the
probes and bound rows of a training run's final probe, written as a run folder's files
(probes.csv, bounds.csv, summary.json, provenance.json). Only folders are read: nothing is ever
downloaded (the package runs offline).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from .config import ConfigError, ModelConfig

GPT2_ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "exact"}
# per block: transformers' name -> (lnstab's name, Conv1D weight stored transposed)
GPT2_BLOCK = {
    "ln_1.weight": ("attn.ln_in.weight", False), "ln_1.bias": ("attn.ln_in.bias", False),
    "attn.c_attn.weight": ("attn.f.qkv.weight", True), "attn.c_attn.bias": ("attn.f.qkv.bias", False),
    "attn.c_proj.weight": ("attn.f.proj.weight", True), "attn.c_proj.bias": ("attn.f.proj.bias", False),
    "ln_2.weight": ("mlp.ln_in.weight", False), "ln_2.bias": ("mlp.ln_in.bias", False),
    "mlp.c_fc.weight": ("mlp.f.fc.weight", True), "mlp.c_fc.bias": ("mlp.f.fc.bias", False),
    "mlp.c_proj.weight": ("mlp.f.proj.weight", True), "mlp.c_proj.bias": ("mlp.f.proj.bias", False),
}
GPT2_TOP = {"transformer.wte.weight": "wte.weight", "transformer.wpe.weight": "wpe.weight",
            "transformer.ln_f.weight": "ln_f.weight", "transformer.ln_f.bias": "ln_f.bias"}


def gpt2_model_config(hf_config) -> ModelConfig:
    """lnstab's ModelConfig of a transformers GPT2Config (ConfigError for what lnstab's GPT is not)."""
    act = hf_config.activation_function
    if act not in GPT2_ACTIVATIONS:
        raise ConfigError(f"GPT-2 activation_function {act!r}: lnstab's MLP has {', '.join(GPT2_ACTIVATIONS)}")
    if not getattr(hf_config, "scale_attn_weights", True) or getattr(hf_config, "scale_attn_by_inverse_layer_idx", False) \
            or getattr(hf_config, "reorder_and_upcast_attn", False):
        raise ConfigError("GPT-2 attention variants (scale_attn_weights=False, scale_attn_by_inverse_layer_idx, "
                          "reorder_and_upcast_attn) are not lnstab's attention")
    return ModelConfig(placement="pre", norm="layernorm", dt=1.0, n_layer=hf_config.n_layer, n_head=hf_config.n_head,
                       d_model=hf_config.n_embd, block_size=hf_config.n_positions, vocab_size=hf_config.vocab_size,
                       bias=True, ln_eps=hf_config.layer_norm_epsilon, gelu=GPT2_ACTIVATIONS[act])


def gpt2_key_map(n_layer: int) -> dict[str, tuple[str, bool]]:
    """transformers' state-dict key -> (lnstab's key, transposed)."""
    keys = {hf: (ours, False) for hf, ours in GPT2_TOP.items()}
    for i in range(n_layer):
        keys.update({f"transformer.h.{i}.{hf}": (f"blocks.{i}.{ours}", t) for hf, (ours, t) in GPT2_BLOCK.items()})
    return keys


def from_gpt2(hf_model):
    """lnstab's GPT with the weights of a transformers GPT2LMHeadModel (its output equals the
    original's up to the order of floating-point operations)."""
    from .model import GPT

    cfg = gpt2_model_config(hf_model.config)
    model = GPT(cfg)
    hf_state = hf_model.state_dict()
    state = {}
    for hf_key, (key, transposed) in gpt2_key_map(cfg.n_layer).items():
        if hf_key not in hf_state:
            raise ConfigError(f"GPT-2 checkpoint: weight {hf_key} is missing")
        t = hf_state[hf_key]
        state[key] = t.t().contiguous() if transposed else t
    state["lm_head.weight"] = state["wte.weight"]  # tied, as in GPT-2
    model.load_state_dict(state, strict=True)
    return model


def to_gpt2(model):
    """A transformers GPT2LMHeadModel with the weights of lnstab's Pre-LN GPT (dt 1, biases,
    LayerNorm): the inverse of ``from_gpt2``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.cfg
    if (c.placement, c.norm, c.dt, c.bias, c.fold_dt) != ("pre", "layernorm", 1.0, True, False):
        raise ConfigError("only a Pre-LN GPT with LayerNorm, biases and dt 1 is a GPT-2 "
                          f"(this one: placement {c.placement}, norm {c.norm}, dt {c.dt}, bias {c.bias})")
    config = GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.d_model, n_layer=c.n_layer,
                        n_head=c.n_head, layer_norm_epsilon=c.ln_eps, tie_word_embeddings=True,
                        activation_function="gelu_new" if c.gelu == "tanh" else "gelu",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = GPT2LMHeadModel(config)
    ours = model.state_dict()
    state = {hf_key: (ours[key].t().contiguous() if transposed else ours[key])
             for hf_key, (key, transposed) in gpt2_key_map(c.n_layer).items()}
    state["lm_head.weight"] = ours["wte.weight"]
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))]:
        raise RuntimeError(f"GPT-2 export: missing {missing}, unexpected {unexpected}")
    return hf.eval()


# -- lnstab inspect ------------------------------------------------------------------------------
def load_checkpoint(folder: str | Path):
    """(lnstab GPT, transformers config) of a ``save_pretrained`` folder; ConfigError naming the
    folder for anything else (no folder, no config.json, an architecture lnstab cannot load,
    weights that do not match the config)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder written by transformers' save_pretrained "
                          "(models are read from folders only: nothing is downloaded)")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: no config.json (not a folder written by save_pretrained)")
    try:
        from transformers import AutoConfig, GPT2LMHeadModel
    except ImportError:
        raise ConfigError("lnstab inspect needs transformers (pip install -e '.[hf]')") from None
    hf_config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if hf_config.model_type != "gpt2":
        raise ConfigError(f"{folder}: model type {hf_config.model_type!r} ({type(hf_config).__name__}); "
                          "lnstab inspect loads the GPT-2 family (model type 'gpt2')")
    try:
        hf_model = GPT2LMHeadModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except Exception as e:  # shapes that do not match the config, a damaged weights file
        raise ConfigError(f"{folder}: its weights do not load as its config says "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:300]})") from None
    return from_gpt2(hf_model.eval()), hf_config


def tokens_for(folder: Path, vocab_size: int, text: str) -> torch.Tensor:
    """The text as token ids of the model: its own tokenizer when the folder has one, else
    GPT-2's BPE (offline) for a vocabulary of GPT-2's size; a ConfigError otherwise."""
    from .data import GPT2_VOCAB, gpt2_encoding

    has_tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json"))
    if has_tokenizer:
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(folder, local_files_only=True)(text)["input_ids"]
    elif vocab_size == GPT2_VOCAB:
        ids = gpt2_encoding().encode_ordinary(text)
    else:
        raise ConfigError(f"{folder}: no tokenizer in the folder, and its vocabulary of {vocab_size} is not "
                          f"GPT-2's {GPT2_VOCAB}: save the tokenizer with the model (save_pretrained)")
    ids = torch.tensor(ids, dtype=torch.long)
    if int(ids.max()) >= vocab_size:
        raise ConfigError(f"{folder}: the tokenizer gives ids up to {int(ids.max())}, beyond the model's "
                          f"vocabulary of {vocab_size}")
    return ids


def default_text() -> str:
    """The validation split of the built-in corpus (its last tenth), as the study holds it out."""
    from .data import read_texts, shakespeare_files

    text = read_texts(shakespeare_files())
    return text[int(0.9 * len(text)):]


def inspect(folder: str | Path, out: str | Path, text: str | None = None, tokens: int = 256, batch: int = 2,
            jacobians: bool = False, verbose: bool = True) -> dict:
    """Probe a pretrained checkpoint on ``batch`` sequences of ``tokens`` tokens of ``text``, as a
    training run's final probe; writes probes.csv, bounds.csv, summary.json and provenance.json."""
    import transformers

    from .bounds import bound_rows
    from .io import write_csv, write_json
    from .probes import probe
    from .runfolder import BOUND_COLUMNS, PROBE_COLUMNS

    t0 = time.perf_counter()
    folder, out = Path(folder), Path(out)
    model, hf_config = load_checkpoint(folder)
    cfg = model.cfg
    if tokens < 2 or tokens > cfg.block_size:
        raise ConfigError(f"--tokens: {tokens} must be in [2, {cfg.block_size}] (the model's context)")
    ids = tokens_for(folder, cfg.vocab_size, default_text() if text is None else text)
    need = batch * tokens + 1
    if len(ids) < need:
        raise ConfigError(f"the text has {len(ids)} tokens; {batch} sequences of {tokens} need {need}")
    seq = ids[: batch * tokens + 1]
    x, y = seq[:-1].view(batch, tokens), seq[1:].view(batch, tokens)
    if verbose:
        n = model.num_params()
        print(f"[lnstab] {folder.name}: GPT-2, Pre-LN, {cfg.n_layer} blocks of width {cfg.d_model}, "
              f"{n / 1e6:.1f} M parameters ({4 * n / 1e9:.2f} GB in float32); {batch} x {tokens} tokens",
              flush=True)
    result = probe(model, x, y, 32 if jacobians else 0, 1e-3)
    finite = all(torch.isfinite(h).all().item() for h in result["hidden"])
    rows = bound_rows(model, result) if finite else []
    import pandas as pd

    write_csv(out / "probes.csv", pd.DataFrame([{"step": 0, **r} for r in result["rows"]], columns=PROBE_COLUMNS))
    b = pd.DataFrame([{"step": 0, **r} for r in rows], columns=BOUND_COLUMNS)
    write_csv(out / "bounds.csv", b)
    summary = {"model": str(folder), "family": "gpt2", "placement": "pre", "norm": "layernorm",
               "n_layer": cfg.n_layer, "d_model": cfg.d_model, "n_params": model.num_params(),
               "tokens": batch * tokens, "batch": batch, "dtype": "float32", "finite": finite,
               "loss": float(result["loss"]) if "loss" in result else None,
               "bound_checks": int((b["kind"] == "check").sum()) if len(b) else 0,
               "bound_violations": int(b["violation"].sum()) if len(b) else 0,
               "seconds": time.perf_counter() - t0}
    write_json(out / "summary.json", summary)
    config_text = (folder / "config.json").read_bytes()
    write_json(out / "provenance.json", {"transformers": transformers.__version__, "torch": str(torch.__version__),
                                         "config_sha256": hashlib.sha256(config_text).hexdigest(),
                                         "model_config": json.loads(config_text), "lnstab_config": cfg.__dict__})
    if verbose:
        print(f"[lnstab] {out}: {summary['bound_checks']} bound checks, {summary['bound_violations']} violations",
              flush=True)
    return summary
