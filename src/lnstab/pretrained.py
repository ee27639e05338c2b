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
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from .bounds import bound_rows
from .config import MEASURED_ONLY_PLACEMENTS, ConfigError, ModelConfig
from .model import lm_loss
from .io import write_csv, write_json
from .probes import probe
from .runfolder import BOUND_COLUMNS, PROBE_COLUMNS

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


def gpt2_from_tensors(hf_config, tensors) -> "GPT":
    """lnstab's GPT of a GPT-2 config with the weights of ``tensors``, pairs (transformers' key,
    tensor) taken one at a time: the model is built without memory (meta device) and each weight
    moved in as it comes, so loading holds one copy of the weights and one tensor more. Keys with
    or without the ``transformer.`` prefix (GPT2LMHeadModel or GPT2Model); attention's causal-mask
    buffers of older checkpoints and the tied head are skipped. A ConfigError for a missing weight
    or one whose shape is not the config's."""
    from .model import GPT

    cfg = gpt2_model_config(hf_config)
    if not getattr(hf_config, "tie_word_embeddings", True):
        raise ConfigError("a GPT-2 with an untied head (tie_word_embeddings false) is not lnstab's GPT")
    with torch.device("meta"):
        model = GPT(cfg)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    keys, state = gpt2_key_map(cfg.n_layer), {}
    for hf_key, t in tensors:
        name = hf_key if hf_key.startswith(("transformer.", "lm_head.")) else f"transformer.{hf_key}"
        if name not in keys:
            continue  # the tied head, causal-mask buffers
        key, transposed = keys[name]
        t = t.t() if transposed else t
        if t.shape != shapes[key]:
            raise ConfigError(f"its weights do not load as its config says ({hf_key}: shape {tuple(t.shape)}, "
                              f"the config's {tuple(shapes[key])})")
        state[key] = t.to(torch.float32).contiguous()  # a copy only where transposed or not float32
    missing = [hf for hf, (key, _) in keys.items() if key not in state]
    if missing:
        raise ConfigError(f"GPT-2 checkpoint: weight {missing[0]} is missing ({len(missing)} in all)")
    state["lm_head.weight"] = state["wte.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    model.lm_head.weight = model.wte.weight  # tied, as in GPT-2 (assign gave the head its own Parameter)
    return model


def from_gpt2(hf_model):
    """lnstab's GPT with the weights of a transformers GPT2LMHeadModel (its output equals the
    original's up to the order of floating-point operations)."""
    return gpt2_from_tensors(hf_model.config, ((k, v.detach().clone()) for k, v in hf_model.state_dict().items()))


SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                      "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(path: Path):
    """(key, tensor) of a .safetensors file, each tensor read into memory of its own. Plain reads,
    not a memory map: a map's pages count as resident as they are read and one tensor kept would
    keep the whole file mapped, doubling the peak memory that inspect measures and checks."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        for key, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if h["dtype"] not in SAFETENSORS_DTYPES:
                raise ConfigError(f"{path.name}: {key} has dtype {h['dtype']}, not a weight type lnstab reads")
            t = torch.empty(h["shape"], dtype=SAFETENSORS_DTYPES[h["dtype"]])
            start, end = h["data_offsets"]
            if t.numel() * t.element_size() != end - start:
                raise ConfigError(f"{path.name}: {key} holds {end - start} bytes, not those of shape {h['shape']}")
            f.seek(8 + size + start)
            if t.numel() and f.readinto(t.view(-1).view(torch.uint8).numpy()) != end - start:
                raise ConfigError(f"{path.name}: ends inside {key} (a truncated file)")
            yield key, t


def weight_tensors(folder: Path):
    """(key, tensor) of every weight of a save_pretrained folder, read one tensor at a time:
    safetensors (one file or shards) or else pytorch_model.bin (memory-mapped)."""
    def shards(single: str, index: str) -> list[Path]:
        if (folder / index).is_file():
            return [folder / f for f in sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))]
        return [folder / single] if (folder / single).is_file() else []

    if files := shards("model.safetensors", "model.safetensors.index.json"):
        for f in files:
            yield from read_safetensors(f)
    elif files := shards("pytorch_model.bin", "pytorch_model.bin.index.json"):
        for f in files:
            yield from torch.load(f, map_location="cpu", mmap=True, weights_only=True).items()
    else:
        raise ConfigError(f"{folder}: no weights (model.safetensors or pytorch_model.bin)")


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
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        # GPT-2's <|endoftext|> (50256) only where the vocabulary holds it
                        bos_token_id=50256 if c.vocab_size > 50256 else None,
                        eos_token_id=50256 if c.vocab_size > 50256 else None)
    hf = GPT2LMHeadModel(config)
    ours = model.state_dict()
    state = {hf_key: (ours[key].t().contiguous() if transposed else ours[key])
             for hf_key, (key, transposed) in gpt2_key_map(c.n_layer).items()}
    state["lm_head.weight"] = ours["wte.weight"]
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))]:
        raise RuntimeError(f"GPT-2 export: missing {missing}, unexpected {unexpected}")
    return hf.eval()


# -- other decoder families: the stream read through forward hooks ------------------------------
# model_type -> (placement, norm, decoder layers, where x^(2i+1) is read: (module of the layer,
# "input" | "output"), or None where attention and MLP act in parallel on the same x, note).
# x^(2i) is a layer's input and x^(2L) the last layer's output, before the final norm.
FAMILIES = {
    "llama": ("pre", "rmsnorm", "model.layers", ("post_attention_layernorm", "input"), ""),
    "mistral": ("pre", "rmsnorm", "model.layers", ("post_attention_layernorm", "input"), ""),
    "qwen2": ("pre", "rmsnorm", "model.layers", ("post_attention_layernorm", "input"), ""),
    "qwen3": ("pre", "rmsnorm", "model.layers", ("post_attention_layernorm", "input"), "QK-norm in attention"),
    "olmo2": ("output", "rmsnorm", "model.layers", ("mlp", "input"), "QK-norm in attention"),
    "gemma2": ("peri", "rmsnorm", "model.layers", ("pre_feedforward_layernorm", "input"),
               "RMSNorm gain (1 + w); embeddings scaled by sqrt(d)"),
    "gemma3_text": ("peri", "rmsnorm", "model.layers", ("pre_feedforward_layernorm", "input"),
                    "RMSNorm gain (1 + w); embeddings scaled by sqrt(d); QK-norm"),
    "opt": (None, "layernorm", "model.decoder.layers", None, "Pre-LN or Post-LN by do_layer_norm_before"),
    "gpt_neox": (None, "layernorm", "gpt_neox.layers", None, "parallel attention and MLP by use_parallel_residual"),
}
MASSIVE_TOP = 3  # the largest dimensions reported per point (massive activations)


def family(hf_config) -> tuple[str, str, str, tuple | None, str]:
    """(placement, norm, layers, mid point, note) of a transformers decoder config."""
    kind = hf_config.model_type
    if kind not in FAMILIES:
        raise ConfigError(f"model type {kind!r} ({type(hf_config).__name__}) is not supported; supported: gpt2, "
                          + ", ".join(FAMILIES))
    placement, norm, layers, mid, note = FAMILIES[kind]
    if kind == "opt":
        pre = hf_config.do_layer_norm_before
        placement = "pre" if pre else "post"
        mid = ("final_layer_norm", "input") if pre else ("self_attn_layer_norm", "output")
    if kind == "gpt_neox":
        parallel = hf_config.use_parallel_residual
        placement = MEASURED_ONLY_PLACEMENTS[0] if parallel else "pre"
        mid = None if parallel else ("post_attention_layernorm", "input")
    return placement, norm, layers, mid, note


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def hooked_stream(hf_model, layers_path: str, mid) -> tuple[list, list]:
    """Forward hooks that collect the stream x^(k) of a decoder during one forward pass: returns
    (the list they fill, the hook handles). Each tensor is kept in the autograd graph."""
    layers = hf_model.get_submodule(layers_path)
    stream, handles = [], []

    def layer_input(module, args, kwargs):
        if not stream:  # x^(0): the first layer's input (embeddings, scaled where the family scales)
            stream.append(args[0] if args else kwargs["hidden_states"])

    handles.append(layers[0].register_forward_pre_hook(layer_input, with_kwargs=True))
    for layer in layers:
        if mid is not None:
            module, side = layer.get_submodule(mid[0]), mid[1]
            if side == "input":
                handles.append(module.register_forward_pre_hook(lambda m, a, kw: stream.append(
                    a[0] if a else kw["hidden_states"]), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(lambda m, a, out: stream.append(_first(out))))
        handles.append(layer.register_forward_hook(lambda m, a, out: stream.append(_first(out))))
    return stream, handles


def massive_rows(hidden: list, sublayers: list[int]) -> list[dict]:
    """Per point: the largest per-dimension max |x| over tokens (massive activations), its
    dimensions, and the top value over the median dimension's."""
    from .probes import _row, point_of

    rows = []
    for k, h in zip(sublayers, hidden):
        per_dim = h.detach().abs().reshape(-1, h.shape[-1]).amax(0).double()
        top = torch.topk(per_dim, min(MASSIVE_TOP, per_dim.numel()))
        point, layer = point_of(k)
        for i, (v, j) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
            rows += [_row(point, layer, k, f"dim_max_{i}", v), _row(point, layer, k, f"dim_max_{i}_index", j)]
        rows.append(_row(point, layer, k, "dim_max_over_median", top.values[0].item() / per_dim.median().item()))
    return rows


def probe_hooked(hf_model, layers_path: str, mid, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The stream rows (moments, adjoint norms) of a transformers decoder on one batch, read by
    hooks; parameters and their gradients are left alone."""
    from .probes import stacked_moments, stream_rows

    stream, handles = hooked_stream(hf_model, layers_path, mid)
    # the weights hold no gradient (load_checkpoint): the stream enters autograd at the embeddings
    handles.append(hf_model.get_input_embeddings().register_forward_hook(lambda m, a, out: out.requires_grad_()))
    try:
        logits = hf_model(input_ids=x).logits
    finally:
        for h in handles:
            h.remove()
    loss = lm_loss(logits, y)
    adjoints = torch.autograd.grad(loss, stream)
    hidden = [h.detach().float() for h in stream]
    step = 1 if mid is not None else 2  # a parallel block is one step: its points are x^(2i)
    sublayers = [step * k for k in range(len(hidden))]
    rows = []
    for k, m, a in zip(sublayers, stacked_moments(hidden), adjoints):
        rows += [r | {"sublayer": k} for r in stream_rows([m], [a.double().norm().item()])]
    from .probes import point_of

    for r in rows:
        r["point"], r["layer"] = point_of(r["sublayer"])
    return {"rows": rows, "hidden": hidden, "sublayers": sublayers, "loss": loss.item()}


# -- lnstab inspect ------------------------------------------------------------------------------
def resolve_model(model: str | Path) -> Path:
    """The folder of MODEL: a folder written by save_pretrained, or a model name (``gpt2``,
    ``org/name``) found in the local transformers cache. Nothing is ever downloaded."""
    path = Path(model)
    if path.is_dir():
        return path
    if path.exists():
        raise ConfigError(f"{path}: not a folder written by transformers' save_pretrained")
    name = str(model)
    if name.count("/") <= 1 and not name.startswith((".", "/", "~")):
        from huggingface_hub import constants, try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # not a valid repository name: not a model name either
            cached = None
        if isinstance(cached, str):
            return Path(cached).parent
        raise ConfigError(f"{name}: neither a folder nor a model in the local cache ({constants.HF_HUB_CACHE}); "
                          "nothing is downloaded here: save the model with save_pretrained and pass its folder")
    raise ConfigError(f"{path}: not a folder written by transformers' save_pretrained "
                      "(models are read from folders or the local cache only: nothing is downloaded)")


def load_checkpoint(folder: str | Path, dtype: torch.dtype = torch.float32):
    """(model, transformers config) of a ``save_pretrained`` folder: lnstab's own GPT for the
    GPT-2 family, the transformers model (eval mode) for the other families of FAMILIES. A
    ConfigError naming the folder for anything else (no folder, no config.json, an architecture
    lnstab does not support, weights that do not match the config)."""
    folder = resolve_model(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: no config.json (not a folder written by save_pretrained)")
    try:
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise ConfigError("lnstab inspect needs transformers (pip install -e '.[hf]')") from None
    hf_config = AutoConfig.from_pretrained(folder, local_files_only=True)
    gpt2 = hf_config.model_type == "gpt2"
    if gpt2 and dtype != torch.float32:
        raise ConfigError("--dtype: the GPT-2 family is measured in lnstab's own GPT, in float32")
    if not gpt2:
        family(hf_config)  # an unsupported architecture stops here, naming the supported ones
    try:
        if gpt2:  # straight from the weights file into lnstab's GPT: one copy of the weights in memory
            return gpt2_from_tensors(hf_config, weight_tensors(folder)), hf_config
        hf_model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype).eval()
    except ConfigError as e:
        raise ConfigError(f"{folder}: {e}") from None
    except Exception as e:  # shapes that do not match the config, a damaged weights file
        raise ConfigError(f"{folder}: its weights do not load as its config says "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:300]})") from None
    # only the stream's gradients are measured: weights without gradients keep autograd from
    # saving the activations their gradients would need
    hf_model.requires_grad_(False)
    return hf_model, hf_config


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


def has_tokenizer(folder: Path) -> bool:
    return any((folder / f).is_file() for f in TOKENIZER_FILES)


def tokens_for(folder: Path, vocab_size: int, text: str, tokenizer: str | Path | None = None) -> torch.Tensor:
    """The text as token ids of the model: by ``tokenizer`` (a folder or cached name holding one)
    when given, else by the folder's own tokenizer, else by GPT-2's BPE (offline) for a vocabulary
    of GPT-2's size; a ConfigError otherwise."""
    from .data import GPT2_VOCAB, gpt2_encoding

    if tokenizer is not None:
        folder = resolve_model(tokenizer)
        if not has_tokenizer(folder):
            raise ConfigError(f"--tokenizer {tokenizer}: no tokenizer there ({', '.join(TOKENIZER_FILES)})")
    if has_tokenizer(folder):
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(folder, local_files_only=True)(text)["input_ids"]
    elif vocab_size == GPT2_VOCAB:
        ids = gpt2_encoding().encode_ordinary(text)
    else:
        raise ConfigError(f"{folder}: no tokenizer in the folder, and its vocabulary of {vocab_size} is not "
                          f"GPT-2's {GPT2_VOCAB}: name one with --tokenizer, or save it with the model "
                          "(save_pretrained)")
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


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# the interpreter with torch, pandas and transformers imported (measured: 0.28 GB), with margin
RUNTIME_BYTES = 0.5e9


def bytes_needed(hf_config, n_params: int, batch: int, tokens: int, dtype: str) -> float:
    """Peak bytes of ``inspect``'s pass: the interpreter; the weights; the logits, their
    log-softmax and both gradients (float32). The GPT-2 family is differentiated one sub-layer at a
    time (``probes.backward_by_sublayer``): the stream x^(0..2L) in float32, one block's
    activations (lnstab.plan's count), the tied embedding's gradient and the float64 stacks of the
    batched reductions (``probes.STACK_BYTES``, a few at once). A hooked family keeps every
    layer's activations for the stream's gradients (its weights have none)."""
    from .plan import block_activation_bytes
    from .probes import STACK_BYTES

    size = DTYPES[dtype].itemsize
    d, L, V = hf_config.hidden_size, hf_config.num_hidden_layers, hf_config.vocab_size
    n = batch * tokens
    block = block_activation_bytes("pre", d, hf_config.num_attention_heads, "bf16" if dtype == "bfloat16" else "fp32")
    width = getattr(hf_config, "intermediate_size", None) or 4 * d
    block *= max(1.0, width / (4 * d))  # an MLP wider than GPT-2's 4d keeps more
    logits = 4 * 4 * V * n  # the head's backward holds logits, log-softmax and both their gradients
    if hf_config.model_type == "gpt2":
        stream = 4 * d * (2 * L + 1) * n
        return RUNTIME_BYTES + 4 * n_params + logits + stream + block * n + 4 * V * d + 4 * STACK_BYTES
    return RUNTIME_BYTES + size * n_params + logits + L * block * n + 4 * d * (2 * L + 1) * n


def available_bytes() -> float:
    """Memory available to this process (Linux: MemAvailable), or infinity where unknown."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def _sequences(folder: Path, hf_config, text: str | None, tokens: int, batch: int, tokenizer=None):
    """(x, y): ``batch`` consecutive sequences of ``tokens`` tokens of the text and their targets."""
    ids = tokens_for(folder, hf_config.vocab_size, default_text() if text is None else text, tokenizer)
    need = batch * tokens + 1
    if len(ids) < need:
        raise ConfigError(f"the text has {len(ids)} tokens; {batch} sequences of {tokens} need {need}")
    seq = ids[:need]
    return seq[:-1].view(batch, tokens), seq[1:].view(batch, tokens)


def check_memory(hf_config, n_params: int, batch: int, tokens: int, dtype: str, say) -> None:
    """One line with the bytes a forward and backward pass needs; a ConfigError naming a batch or
    dtype that fits when they exceed the memory available. It runs with the weights loaded: they
    are counted in the need and are no longer in what is available."""
    loaded = RUNTIME_BYTES + (4 if hf_config.model_type == "gpt2" else DTYPES[dtype].itemsize) * n_params
    need, have = bytes_needed(hf_config, n_params, batch, tokens, dtype), available_bytes()
    say(f"{batch} x {tokens} tokens in {dtype} need about {need / 1e9:.1f} GB (weights, activations, logits); "
        f"with the interpreter and weights loaded ({loaded / 1e9:.1f} GB), {(need - loaded) / 1e9:.1f} GB more of "
        f"{have / 1e9:.1f} GB available")
    if need - loaded > have:
        fits = [b for b in range(batch - 1, 0, -1)
                if bytes_needed(hf_config, n_params, b, tokens, dtype) - loaded <= have]
        bf16 = dtype == "float32" and hf_config.model_type != "gpt2"  # GPT-2 is measured in float32 only
        hint = f"--batch {fits[0]}" if fits else f"fewer --tokens{' or --dtype bfloat16' if bf16 else ''}"
        raise ConfigError(f"{batch} x {tokens} tokens in {dtype} need about {need / 1e9:.1f} GB, "
                          f"{(have + loaded) / 1e9:.1f} GB are available: try {hint}")


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def inspect(folder: str | Path, out: str | Path, text: str | None = None, tokens: int = 256, batch: int = 2,
            jacobians: bool = False, dtype: str = "float32", verbose: bool = True, sequences=None,
            probe_config=None, name: str | None = None, tokenizer: str | Path | None = None) -> dict:
    """Probe a pretrained checkpoint on ``batch`` sequences of ``tokens`` tokens of ``text`` (or on
    ``sequences``, a pair (x, y) of token tensors), as a training run's final probe; writes
    probes.csv, bounds.csv, summary.json and provenance.json to ``out``. The GPT-2 family gets every
    probe and bound of the package (``probe_config``, a ProbeConfig, sets them as in a training's
    final probe; by default float32 bounds, Jacobians with ``jacobians``); other families the
    stream's moments and adjoint norms through hooks (bounds.csv has no rows: no bound of docs/ is
    proven for their norm conventions); every family the per-dimension maxima of the stream."""
    from .config import ProbeConfig

    t0 = time.perf_counter()
    folder, out = resolve_model(folder), Path(out)
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype: one of {', '.join(DTYPES)}, got {dtype!r}")
    model, hf_config = load_checkpoint(folder, DTYPES[dtype])
    gpt2 = hf_config.model_type == "gpt2"
    placement, norm, layers, mid, note = ("pre", "layernorm", None, None, "") if gpt2 else family(hf_config)
    if sequences is None:
        context = model.cfg.block_size if gpt2 else hf_config.max_position_embeddings
        if tokens < 2 or tokens > context:
            raise ConfigError(f"--tokens: {tokens} must be in [2, {context}] (the model's context)")
        sequences = _sequences(folder, hf_config, text, tokens, batch, tokenizer)
    x, y = sequences
    n_params = sum(p.numel() for p in model.parameters())

    def say(msg):
        if verbose:
            print(f"[lnstab] {name or folder.name}: {msg}", file=sys.stderr, flush=True)

    say(f"{hf_config.model_type}, placement {placement}, {norm}, {hf_config.num_hidden_layers} blocks, "
        f"{n_params / 1e6:.1f} M parameters" + (f"; note: {note}" if note else ""))
    check_memory(hf_config, n_params, x.shape[0], x.shape[1], dtype, say)
    pc = probe_config or ProbeConfig(jacobian_iters=32 if jacobians else 0, float64_bounds=False, adjoint_sequences=0)
    if gpt2:
        result = probe(model, x, y, pc.jacobian_iters, pc.jacobian_tol, float64=pc.float64_bounds, recompute=True)
        result["sublayers"] = list(range(len(result["hidden"])))
    else:
        result = probe_hooked(model, layers, mid, x, y)
    finite = [bool(torch.isfinite(h).all()) for h in result["hidden"]]
    first_bad = next((k for k, ok in zip(result["sublayers"], finite) if not ok), None)
    rows = bound_rows(model, result, pc.adjoint_sequences, pc.adjoint_max_dim) if gpt2 and all(finite) else []
    probes = pd.DataFrame([{"step": 0, **r} for r in result["rows"] + massive_rows(result["hidden"], result["sublayers"])],
                          columns=PROBE_COLUMNS)
    bounds = pd.DataFrame([{"step": 0, **r} for r in rows], columns=BOUND_COLUMNS)
    write_csv(out / "probes.csv", probes)
    write_csv(out / "bounds.csv", bounds)
    checks = bounds[bounds["kind"] == "check"]
    summary = {"model": name or str(folder), "model_type": hf_config.model_type, "class": type(model).__name__,
               "placement": placement, "norm": norm, "note": note, "n_layer": hf_config.num_hidden_layers,
               "n_params": n_params, "tokens": int(x.numel()), "batch": int(x.shape[0]), "dtype": dtype,
               "finite": all(finite), "first_nonfinite_sublayer": first_bad,
               "loss": result["loss"] if math.isfinite(result["loss"]) else None,
               "bound_checks": len(checks), "bound_violations": int(checks["violation"].sum()),
               "max_ratio": float(checks["ratio"].max()) if len(checks) else None,
               "peak_rss_bytes": peak_rss_bytes(), "seconds": time.perf_counter() - t0}
    write_json(out / "summary.json", summary)
    config_text = (folder / "config.json").read_bytes()
    write_json(out / "provenance.json", {"transformers": transformers_version(), "torch": str(torch.__version__),
                                         "config_sha256": hashlib.sha256(config_text).hexdigest(),
                                         "model_config": json.loads(config_text)})
    end = "finite" if all(finite) else f"NOT finite from x^({first_bad}) on (dtype {dtype}: try float32)"
    say(f"{out}: stream {end}; {summary['bound_checks']} bound checks, {summary['bound_violations']} violations")
    return summary


def inspect_models(models: list[str], out: str | Path, text: str | None = None, tokens: int = 256, batch: int = 2,
                   jacobians: bool = False, dtype: str = "float32", tokenizer=None) -> dict[str, dict]:
    """``lnstab inspect``: each model inspected (one: into ``out``; several: into out/<name>/, named
    as the workflow names them), then the inspected tables and fig_inspect of all of them in
    ``out``. {name: summary}."""
    from .study import inspection_names, make_figure

    out = Path(out)
    names = inspection_names(models)
    folders = {name: out if len(names) == 1 else out / name for name in names}
    # one model is recorded by its folder, as before; several by their names
    summaries = {name: inspect(model, folders[name], text, tokens, batch, jacobians, dtype,
                               name=name if len(names) > 1 else None, tokenizer=tokenizer)
                 for name, model in names.items()}
    write_inspection_tables(folders, out)
    make_figure("fig9_inspect", {"inspected": out / "inspected.csv"}, out / "fig_inspect")
    return summaries


def transformers_version() -> str:
    import transformers

    return transformers.__version__


# -- the round trip: a trained run of the study, exported to transformers and inspected ---------
def inspect_run(run_folder: str | Path, meta_path: str | Path, out: str | Path) -> dict:
    """Export a trained Pre-LN run's final model to transformers' format (save_pretrained), inspect
    the export on the run's own probe batch with the run's probe settings, and compare every row
    with the run's final probe: the inspected tables must equal the run's (roundtrip.json records
    the largest difference; a ConfigError when they differ, as that is a bug of the export or of
    inspect)."""
    import tempfile

    from .study import trained_model
    from .train import probe_batch

    run_folder, out = Path(run_folder), Path(out)
    cfg, model, corpus = trained_model(run_folder, meta_path)
    with tempfile.TemporaryDirectory() as tmp:
        to_gpt2(model).save_pretrained(tmp)
        summary = inspect(tmp, out, sequences=probe_batch(cfg, corpus), probe_config=cfg.probe,
                          name=f"{run_folder.name} (exported)")
    diffs = {}
    for table in ("probes", "bounds"):
        ours = pd.read_csv(out / f"{table}.csv")
        run = pd.read_csv(run_folder / f"{table}.csv")
        diffs[table] = compare_final(ours, run[run["step"] == run["step"].max()])
    record = {"run": run_folder.name, "step": int(pd.read_csv(run_folder / "probes.csv")["step"].max()), **diffs}
    write_json(out / "roundtrip.json", record)
    bad = [t for t, d in diffs.items() if d["missing"] or d["max_abs_diff"] > 0]
    if bad:
        raise ConfigError(f"{out}: the inspected export differs from run {run_folder.name}'s final probe in "
                          + ", ".join(f"{t} ({diffs[t]})" for t in bad))
    return summary | {"roundtrip": record}


def compare_final(inspected: pd.DataFrame, final: pd.DataFrame) -> dict:
    """Rows of a run's final probe against the same rows inspected: how many matched, how many of
    the run's are missing, and the largest absolute difference of their values."""
    keys = ["point", "layer", "sublayer", "quantity"]
    values = ["value"] if "value" in final else ["measured", "bound"]
    both = final.merge(inspected, on=keys, how="left", suffixes=("", "_inspected"), indicator=True)
    missing = int((both["_merge"] != "both").sum())
    diff = pd.concat([(both[v] - both[f"{v}_inspected"]).abs() for v in values])
    return {"rows": int(len(final)), "missing": missing, "max_abs_diff": float(diff.max()) if len(diff) else 0.0}


# -- the study's tables of its inspections -------------------------------------------------------
INSPECTED_QUANTITIES = ("mean_abs", "var_entry", "var_data", "mean_norm", "max_abs", "adjoint_norm",
                        "dim_max_1", "dim_max_over_median")
MODEL_COLUMNS = ("model", "model_type", "placement", "norm", "n_layer", "n_params", "tokens", "dtype", "finite",
                 "first_nonfinite_sublayer", "loss", "bound_checks", "bound_violations", "max_ratio")


def inspection_tables(folders: dict[str, str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inspected, inspected_models) of the inspection folders {name: folder}: the stream's rows at
    every point with their bound where one is proven (long), and one row per model with its
    summary, its largest dimension's max |x| over the median dimension's, and for an exported run
    the largest difference from the run's final probe. Wall-clock numbers stay in summary.json."""
    from .stats import HIDDEN_POINTS

    longs, models = [], []
    for name, folder in sorted(folders.items()):
        folder = Path(folder)
        s = json.loads((folder / "summary.json").read_text())
        p = pd.read_csv(folder / "probes.csv")
        p = p[p["point"].isin(HIDDEN_POINTS) & p["quantity"].isin(INSPECTED_QUANTITIES)]
        b = pd.read_csv(folder / "bounds.csv")[["sublayer", "quantity", "bound"]].drop_duplicates(["sublayer", "quantity"])
        p = p.merge(b, on=["sublayer", "quantity"], how="left")
        longs.append(p.assign(name=name, model=s["model"], placement=s["placement"], norm=s["norm"], n_layer=s["n_layer"],
                              depth=p["sublayer"] / p["sublayer"].max()))
        row = {"name": name, **{k: s.get(k) for k in MODEL_COLUMNS}}
        over = p.loc[p["quantity"] == "dim_max_over_median", "value"]
        row["dim_max_over_median"] = float(over.max()) if len(over) else None
        rt = folder / "roundtrip.json"
        row["roundtrip_max_abs_diff"] = (max(d["max_abs_diff"] for k, d in json.loads(rt.read_text()).items()
                                             if isinstance(d, dict)) if rt.exists() else None)
        models.append(row)
    cols = ["name", "model", "placement", "norm", "n_layer", "sublayer", "depth", "point", "layer", "quantity",
            "value", "bound"]
    long = pd.concat(longs, ignore_index=True)[cols] if longs else pd.DataFrame(columns=cols)
    long = long.sort_values(["name", "sublayer", "quantity"]).reset_index(drop=True)
    return long, pd.DataFrame(models, columns=["name", *MODEL_COLUMNS, "dim_max_over_median", "roundtrip_max_abs_diff"])


def write_inspection_tables(folders: dict[str, str | Path], tables_dir: str | Path) -> None:
    from .tables import write_table

    long, models = inspection_tables(folders)
    write_table(long, Path(tables_dir) / "inspected")
    write_table(models, Path(tables_dir) / "inspected_models")
