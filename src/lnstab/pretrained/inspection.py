"""``lnstab inspect``: a trained checkpoint measured as a training run's final probe.

A model is a ``save_pretrained`` folder, a name in the local transformers cache, a GGUF file, or
the short name of a model an installed package carries (``installed.INSTALLED``: smollm2-135m,
gemma3-270m, minilm-l6). Nothing is ever downloaded. The GPT-2 family is loaded into lnstab's own
GPT (every probe, bound and Jacobian estimate of the package); other families are measured through
hooks (``hooked``), with the statistics of ``stream`` and the bounds of ``bounds`` where one is
proven for their conventions. Written to the output folder: probes.csv and bounds.csv (a run's
final probe), stream.csv (per group of sequences), gains.csv (each norm's gain), quantisation.csv
(with ``--quantise``), summary.json, provenance.json (``INSPECT_FILES``; a file a family does not
fill has its columns and no rows).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from ..bounds import bound_rows
from ..config import ConfigError
from ..io import write_csv, write_json
from ..model import lm_loss
from ..probes import point_of, probe, stacked_moments, stream_rows
from ..runfolder import BOUND_COLUMNS, PROBE_COLUMNS
from .bounds import family_bound_rows
from .formats import gguf_quantisation, load_gguf, weight_tensors
from .gpt2 import gpt2_from_tensors
from .hooked import Family, family, probe_hooked
from .installed import INSTALLED, file_sha256, inspection_names, installed_path
from .stream import STREAM_COLUMNS, depth_statistics, gain_rows, groups, stream_table_rows
from .tables import GAIN_COLUMNS

MASSIVE_TOP = 3  # the largest dimensions reported per point (massive activations)


def massive_rows(hidden: list, sublayers: list[int]) -> list[dict]:
    """Per point: the largest per-dimension max |x| over tokens (massive activations), its
    dimensions, and the top value over the median dimension's."""
    rows = []
    for k, h in zip(sublayers, hidden):
        per_dim = h.detach().abs().reshape(-1, h.shape[-1]).amax(0).double()
        top = torch.topk(per_dim, min(MASSIVE_TOP, per_dim.numel()))
        point, layer = point_of(k)
        row = lambda q, v: {"point": point, "layer": layer, "sublayer": k, "quantity": q, "value": v}  # noqa: E731
        for i, (v, j) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
            rows += [row(f"dim_max_{i}", v), row(f"dim_max_{i}_index", j)]
        rows.append(row("dim_max_over_median", top.values[0].item() / per_dim.median().item()))
    return rows


# -- which model ---------------------------------------------------------------------------------
def resolve_model(model: str | Path) -> Path:
    """The folder or GGUF file of MODEL: a short name of ``INSTALLED`` (its checked file), a folder
    written by save_pretrained, a .gguf file, or a model name (``gpt2``, ``org/name``) found in the
    local transformers cache. Nothing is ever downloaded."""
    if str(model) in INSTALLED:
        return installed_path(str(model))
    path = Path(model)
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return path
    if path.exists():
        raise ConfigError(f"{path}: not a folder written by transformers' save_pretrained, nor a .gguf file")
    name = str(model)
    if name.count("/") <= 1 and not name.startswith((".", "/", "~")):
        from huggingface_hub import constants, try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # not a valid repository name: not a model name either
            cached = None
        if isinstance(cached, str):
            return Path(cached).parent
        raise ConfigError(f"{name}: neither a folder, an installed model ({', '.join(INSTALLED)}) nor a model in the "
                          f"local cache ({constants.HF_HUB_CACHE}); nothing is downloaded here: save the model with "
                          "save_pretrained and pass its folder")
    raise ConfigError(f"{path}: not a folder written by transformers' save_pretrained "
                      "(models are read from folders, .gguf files or the local cache only: nothing is downloaded)")


def load_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32):
    """(model, transformers config) of a ``save_pretrained`` folder or a GGUF file: lnstab's own GPT
    for the GPT-2 family, the transformers model (eval mode, weights without gradients) for the
    other families of FAMILIES. A ConfigError naming the file for anything else (no config.json,
    an architecture lnstab does not support, weights that do not match the config)."""
    path = resolve_model(path)
    try:
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    except ImportError:
        raise ConfigError("lnstab inspect needs transformers (pip install -e '.[hf]')") from None
    gguf = path.suffix == ".gguf"
    if not gguf and not (path / "config.json").is_file():
        raise ConfigError(f"{path}: no config.json (not a folder written by save_pretrained)")
    try:
        # trust_remote_code False: a folder that asks for its own code is refused, never prompted for
        hf_config = (AutoConfig.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True) if gguf
                     else AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False))
    except ConfigError:
        raise
    except Exception as e:  # a config.json that is not JSON, an unknown model_type, a damaged GGUF header
        raise ConfigError(f"{path}: its configuration does not load ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:300] if str(e) else 'no message'})") from None
    gpt2 = hf_config.model_type == "gpt2"
    if gpt2 and dtype != torch.float32:
        raise ConfigError("--dtype: the GPT-2 family is measured in lnstab's own GPT, in float32")
    fam = None if gpt2 else family(hf_config)  # an unsupported architecture stops here, naming the supported ones
    try:
        if gpt2 and not gguf:  # straight from the weights file into lnstab's GPT: one copy of the weights
            return gpt2_from_tensors(hf_config, weight_tensors(path)), hf_config
        if gguf:
            hf_model, hf_config = load_gguf(path, dtype)
        else:
            auto = AutoModel if fam is not None and fam.encoder else AutoModelForCausalLM
            hf_model = auto.from_pretrained(path, local_files_only=True, dtype=dtype, trust_remote_code=False).eval()
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except Exception as e:  # shapes that do not match the config, a damaged weights file
        raise ConfigError(f"{path}: its weights do not load as its config says "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else 'no message'})") from None
    # only the stream's gradients are measured: weights without gradients keep autograd from
    # saving the activations their gradients would need
    hf_model.requires_grad_(False)
    return hf_model, hf_config


# -- which tokens --------------------------------------------------------------------------------
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json", "vocab.txt")


def has_tokenizer(path: Path) -> bool:
    return path.suffix == ".gguf" or any((path / f).is_file() for f in TOKENIZER_FILES)


@functools.lru_cache(maxsize=4)
def hf_tokenizer(path: Path):
    """transformers' tokenizer of a folder or of a GGUF file's metadata (built once per process)."""
    from transformers import AutoTokenizer

    if path.suffix == ".gguf":
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    else:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.model_max_length = 2**62  # a whole text is tokenized, then cut into windows: no warning about its length
    return tok


def _tokenizer_path(path: Path, tokenizer: str | Path | None) -> Path | None:
    if tokenizer is not None:
        path = resolve_model(tokenizer)
        if not has_tokenizer(path):
            raise ConfigError(f"--tokenizer {tokenizer}: no tokenizer there ({', '.join(TOKENIZER_FILES)})")
    return path if has_tokenizer(path) else None


def tokens_for(path: Path, vocab_size: int, text: str, tokenizer: str | Path | None = None) -> torch.Tensor:
    """The text as token ids of the model, without special tokens: by ``tokenizer`` (a folder or
    cached name holding one) when given, else by the model's own tokenizer, else by GPT-2's BPE
    (offline) for a vocabulary of GPT-2's size; a ConfigError otherwise."""
    from ..data import GPT2_VOCAB, gpt2_encoding

    tok = _tokenizer_path(path, tokenizer)
    if tok is not None:
        ids = hf_tokenizer(tok)(text, add_special_tokens=False)["input_ids"]
    elif vocab_size == GPT2_VOCAB:
        ids = gpt2_encoding().encode_ordinary(text)
    else:
        raise ConfigError(f"{path}: no tokenizer in the folder, and its vocabulary of {vocab_size} is not "
                          f"GPT-2's {GPT2_VOCAB}: name one with --tokenizer, or save it with the model "
                          "(save_pretrained)")
    ids = torch.tensor(ids, dtype=torch.long)
    if int(ids.max()) >= vocab_size:
        raise ConfigError(f"{path}: the tokenizer gives ids up to {int(ids.max())}, beyond the model's "
                          f"vocabulary of {vocab_size}")
    return ids


def bos_id(path: Path, tokenizer: str | Path | None = None, encoder: bool = False) -> int | None:
    """The token a sequence of the model starts with in training: its tokenizer's BOS token
    (an encoder's CLS), or None where the model has no tokenizer or none."""
    tok = _tokenizer_path(path, tokenizer)
    if tok is None:
        return None
    t = hf_tokenizer(tok)
    return t.cls_token_id if encoder else t.bos_token_id


def default_text() -> str:
    """The validation split of the built-in corpus (its last tenth), as the study holds it out."""
    from ..data import read_texts, shakespeare_files

    text = read_texts(shakespeare_files())
    return text[int(0.9 * len(text)):]


def second_text() -> tuple[str, str]:
    """(name, text) of a second English text every Python carries: CPython's licence (prose unlike
    the corpus's verse). A ConfigError where this Python's standard library lacks it."""
    import sysconfig

    path = Path(sysconfig.get_path("stdlib")) / "LICENSE.txt"
    if not path.is_file():
        raise ConfigError(f"{path}: this Python has no licence text for the second text")
    return "python_licence", path.read_text(encoding="utf-8")


def windows(ids: torch.Tensor, tokens: int, batch: int, bos: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): ``batch`` consecutive windows of ``tokens`` tokens and their next tokens; with a BOS
    id, the same windows again behind BOS (BOS + the first tokens - 1 tokens of each), so the two
    halves of the batch differ by the first token only (``stream.groups``)."""
    need = batch * tokens + 1
    if len(ids) < need:
        raise ConfigError(f"the text has {len(ids)} tokens; {batch} sequences of {tokens} need {need}")
    seq = ids[:need]
    x, y = seq[:-1].view(batch, tokens), seq[1:].view(batch, tokens)
    if bos is None:
        return x, y
    xb = torch.cat([torch.full((batch, 1), bos, dtype=x.dtype), x[:, :-1]], 1)
    return torch.cat([x, xb]), torch.cat([y, x])


def unigram_entropy(targets: torch.Tensor) -> float:
    """The unigram baseline of these tokens: the entropy (nats) of their own empirical
    distribution, the loss of the best model that ignores context, fitted on them."""
    counts = torch.bincount(targets.flatten()).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def loss_by_group(losses: list[float], targets: torch.Tensor, bos: bool) -> dict[str, float]:
    """Each group's mean next-token loss (sequences of equal length), with the unigram baseline of
    the windows' targets."""
    out = {"unigram": unigram_entropy(targets[:len(losses) // 2 if bos else len(losses)])}
    for g, idx in groups(len(losses), bos).items():
        out[f"loss_{g}"] = sum(losses[i] for i in idx) / len(idx)
    return out


SECOND_TEXT_WINDOWS = 4  # at most, per group: a loss, not a statistic over sequences


@torch.no_grad()
def second_text_losses(model, path: Path, hf_config, tokens: int, batch: int, bos: int | None, tokenizer) -> dict:
    """A decoder's loss on windows of ``second_text`` built as the probe batch is (at most
    SECOND_TEXT_WINDOWS), one sequence at a time ({} where the text is shorter than one window)."""
    label, text = second_text()
    ids = tokens_for(path, hf_config.vocab_size, text, tokenizer)
    n = min(batch, SECOND_TEXT_WINDOWS, (len(ids) - 1) // tokens)
    if n < 1:
        return {}
    x, y = windows(ids, tokens, n, bos)
    losses = [lm_loss(model(input_ids=x[b:b + 1]).logits, y[b:b + 1]).item() for b in range(x.shape[0])]
    return {label: loss_by_group(losses, y, bos is not None)}


# -- memory --------------------------------------------------------------------------------------
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# the interpreter with torch, pandas and transformers imported (measured: 0.28 GB), with margin
RUNTIME_BYTES = 0.5e9


def bytes_needed(hf_config, n_params: int, batch: int, tokens: int, dtype: str) -> float:
    """Peak bytes of ``inspect``'s pass: the interpreter; the weights; the logits, their
    log-softmax and both gradients (float32). The GPT-2 family is differentiated one sub-layer at a
    time (``probes.backward_by_sublayer``): the stream x^(0..2L) in float32, one block's
    activations (lnstab.plan's count), the tied embedding's gradient and the float64 stacks of the
    batched reductions (``probes.STACK_BYTES``, a few at once). A hooked family runs one sequence
    at a time: one sequence's logits and every layer's activations (its weights have no gradient,
    the stream has), the batch's stream and adjoints kept in float32, and the stacks of the
    batched reductions (measured: SmolLM2, 16 x 128 tokens, peak 2.3 GiB against 3.2 GB estimated)."""
    from ..plan import block_activation_bytes
    from ..probes import STACK_BYTES

    size = DTYPES[dtype].itemsize
    d, L, V = hf_config.hidden_size, hf_config.num_hidden_layers, hf_config.vocab_size
    n = batch * tokens
    block = block_activation_bytes("pre", d, hf_config.num_attention_heads, "bf16" if dtype == "bfloat16" else "fp32")
    width = getattr(hf_config, "intermediate_size", None) or 4 * d
    block *= max(1.0, width / (4 * d))  # an MLP wider than GPT-2's 4d keeps more
    if hf_config.model_type == "gpt2":
        logits = 4 * 4 * V * n  # the head's backward holds logits, log-softmax and both their gradients
        stream = 4 * d * (2 * L + 1) * n
        return RUNTIME_BYTES + 4 * n_params + logits + stream + block * n + 4 * V * d + 4 * STACK_BYTES
    logits = 4 * 4 * V * tokens
    return (RUNTIME_BYTES + size * n_params + logits + L * block * tokens + 2 * 4 * d * (2 * L + 1) * n
            + 4 * STACK_BYTES)


def available_bytes() -> float:
    """Memory available to this process (Linux: MemAvailable), or infinity where unknown."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


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


def transformers_version() -> str:
    import transformers

    return transformers.__version__


# -- the measurement -----------------------------------------------------------------------------
def measure_hooked(model, fam: Family, x, y, bos: bool, out: Path, say) -> dict:
    """A hooked family's pass: probes.csv's rows of the whole batch, stream.csv and gains.csv, the
    bound rows where a bound is proven for the family, and the summary's numbers per group."""
    result = probe_hooked(model, fam, x, y)
    hidden = result["hidden"]
    rows = []
    for k, m, a in zip(result["sublayers"], stacked_moments(hidden), result["adjoints"]):
        rows += [r | {"sublayer": k} for r in stream_rows([m], [a.double().norm().item()])]
    for r in rows:
        r["point"], r["layer"] = point_of(r["sublayer"])
    finite = all(bool(torch.isfinite(h).all()) for h in hidden)
    stream = pd.DataFrame(stream_table_rows(result, x, bos) if finite else [], columns=STREAM_COLUMNS)
    write_csv(out / "stream.csv", stream)
    write_csv(out / "gains.csv", pd.DataFrame(gain_rows(model, fam), columns=GAIN_COLUMNS))
    depth = {g: depth_statistics(result, idx) for g, idx in groups(x.shape[0], bos).items()} if finite else {}
    for g, s in depth.items():
        say(f"sequences {g}: depth exponent {s['depth_exponent']:.2f} [{s['depth_exponent_low']:.2f}, "
            f"{s['depth_exponent_high']:.2f}], {s['forward']}; adjoint factor {s['adjoint_step']:.3f}, {s['backward']}")
    bounds = family_bound_rows(model, fam, hidden) if finite else []
    return {**result, "rows": rows, "bound_rows": bounds, "depth": depth, "stream": stream}


# the statistics whose change under quantisation is reported (relative to the float32 model's)
QUANTISED_QUANTITIES = ("mean_abs", "var_entry", "var_data", "mean_norm", "median_token_norm", "top_token_norm",
                        "max_abs", "dim_max_over_median", "adjoint_norm")
QUANTISATION_COLUMNS = ["format", "tensors", "quantity", "points", "max_rel_change", "median_rel_change"]


def quantisation_effect(model, fam: Family, x, y, bos: bool, base: dict, formats, out: Path, say) -> dict:
    """Each format's effect on the model's statistics: the model's weights round-tripped through it
    (``quantise``), measured on the same sequences; per quantity of QUANTISED_QUANTITIES the
    largest and median relative change over points and groups, and how often the massive
    activation's dimension moved (quantisation.csv); per format the largest change of the
    moments, of any statistic, and the change of the depth exponent (the summary)."""
    from .quantise import quantised_copy

    rows, effect = [], {}
    keys = ["sequences", "point", "sublayer", "quantity"]
    for fmt in formats:
        q, used = quantised_copy(model, fmt)
        res = probe_hooked(q, fam, x, y)
        got = pd.DataFrame(stream_table_rows(res, x, bos), columns=STREAM_COLUMNS)
        both = base["stream"].merge(got, on=keys, suffixes=("", "_q"))
        tensors = " ".join(f"{k}:{v}" for k, v in used.items())
        for qty in (*QUANTISED_QUANTITIES, "max_abs_dim"):
            b = both[both["quantity"] == qty]
            if qty == "max_abs_dim":
                moved = float((b["value"] != b["value_q"]).mean())
                rows.append({"format": fmt, "tensors": tensors, "quantity": "max_abs_dim_moved", "points": len(b),
                             "max_rel_change": moved, "median_rel_change": moved})
                continue
            rel = ((b["value_q"] - b["value"]).abs() / b["value"].abs()).replace([float("inf")], float("nan"))
            rows.append({"format": fmt, "tensors": tensors, "quantity": qty, "points": len(b),
                         "max_rel_change": float(rel.max()), "median_rel_change": float(rel.median())})
        mine = [r for r in rows if r["format"] == fmt]
        moments = [r["max_rel_change"] for r in mine if r["quantity"] in ("mean_abs", "var_entry", "var_data", "mean_norm")]
        depth = depth_statistics(res, groups(x.shape[0], bos)["all"])
        effect[fmt] = {"tensors": tensors, "moments_max_rel_change": max(moments),
                       "any_statistic_max_rel_change": max(r["max_rel_change"] for r in mine
                                                           if r["quantity"] in QUANTISED_QUANTITIES),
                       "depth_exponent_change": depth["depth_exponent"] - base["depth"]["all"]["depth_exponent"],
                       "loss_change": res["loss"] - base["loss"]}
        say(f"quantised to {fmt} ({tensors}): moments change by at most {max(moments):.2%}, "
            f"depth exponent by {effect[fmt]['depth_exponent_change']:+.4f}")
    write_csv(out / "quantisation.csv", pd.DataFrame(rows, columns=QUANTISATION_COLUMNS))
    return effect


def inspect(model_path: str | Path, out: str | Path, text: str | None = None, tokens: int = 256, batch: int = 2,
            jacobians: bool = False, dtype: str = "float32", verbose: bool = True, sequences=None,
            probe_config=None, name: str | None = None, tokenizer: str | Path | None = None,
            quantise: tuple[str, ...] = ()) -> dict:
    """Probe a trained checkpoint on ``batch`` windows of ``tokens`` tokens of ``text`` (or on
    ``sequences``, a pair (x, y) of token tensors), as a training run's final probe; writes
    probes.csv, bounds.csv, summary.json and provenance.json to ``out``. The GPT-2 family gets every
    probe and bound of the package (``probe_config``, a ProbeConfig, sets them as in a training's
    final probe; by default float32 bounds, Jacobians with ``jacobians``). Other families: the
    stream through hooks, each window also behind the model's BOS token where it has one,
    stream.csv and gains.csv, the bounds proven for the family (bounds.csv is empty for those
    without one, and the summary says so), a decoder's loss on a second text; with ``quantise``
    (formats of ``quantise.FORMATS``) a float32 model's statistics again with its weights
    quantised (quantisation.csv)."""
    from ..config import ProbeConfig

    t0 = time.perf_counter()
    short = str(model_path) if str(model_path) in INSTALLED else None
    path, out = resolve_model(model_path), Path(out)
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype: one of {', '.join(DTYPES)}, got {dtype!r}")

    def say(msg):
        if verbose:
            print(f"[lnstab] {name or short or path.name}: {msg}", file=sys.stderr, flush=True)

    say(f"loading {path}")
    model, hf_config = load_checkpoint(path, DTYPES[dtype])
    gpt2 = hf_config.model_type == "gpt2"
    fam = Family("pre", "layernorm", "", None, "") if gpt2 else family(hf_config)
    bos, own_windows = None, sequences is None
    if own_windows:
        context = model.cfg.block_size if gpt2 else hf_config.max_position_embeddings
        if tokens < 2 or tokens > context:
            raise ConfigError(f"--tokens: {tokens} must be in [2, {context}] (the model's context)")
        ids = tokens_for(path, hf_config.vocab_size, default_text() if text is None else text, tokenizer)
        bos = None if gpt2 else bos_id(path, tokenizer, fam.encoder)
        sequences = windows(ids, tokens, batch, bos)
    x, y = sequences
    n_params = sum(p.numel() for p in model.parameters())
    say(f"{hf_config.model_type}, placement {fam.placement}, {fam.norm}, {hf_config.num_hidden_layers} blocks, "
        f"{n_params / 1e6:.1f} M parameters" + (f"; note: {fam.note}" if fam.note else ""))
    check_memory(hf_config, n_params, x.shape[0], x.shape[1], dtype, say)
    pc = probe_config or ProbeConfig(jacobian_iters=32 if jacobians else 0, float64_bounds=False, adjoint_sequences=0)
    if jacobians and not gpt2:
        say("--jacobians: Jacobian-norm estimates run on lnstab's own GPT (the GPT-2 family); this family is "
            "measured through hooks, where a sub-layer is not a function lnstab can call: not computed")
    extra = {}
    if gpt2:
        result = probe(model, x, y, pc.jacobian_iters, pc.jacobian_tol, float64=pc.float64_bounds, recompute=True)
        result["sublayers"] = list(range(len(result["hidden"])))
        finite = all(bool(torch.isfinite(h).all()) for h in result["hidden"])
        result["bound_rows"] = bound_rows(model, result, pc.adjoint_sequences, pc.adjoint_max_dim,
                                           pc.adjoint_lanczos_products) if finite else []
    else:
        result = measure_hooked(model, fam, x, y, bos is not None, out, say)
        extra["depth"] = result["depth"]
        if quantise and path.suffix != ".gguf" and all(torch.isfinite(h).all() for h in result["hidden"]):
            extra["quantisation_effect"] = quantisation_effect(model, fam, x, y, bos is not None, result, quantise,
                                                               out, say)
        if not fam.encoder and own_windows:
            extra["texts"] = {"corpus" if text is None else "text": loss_by_group(result["losses"], y, bos is not None),
                              **second_text_losses(model, path, hf_config, x.shape[1], batch, bos, tokenizer)}
    if "quantisation_effect" not in extra:  # every inspection has the same files (the workflow's outputs)
        write_csv(out / "quantisation.csv", pd.DataFrame(columns=QUANTISATION_COLUMNS))
    if gpt2:
        write_csv(out / "stream.csv", pd.DataFrame(columns=STREAM_COLUMNS))
        write_csv(out / "gains.csv", pd.DataFrame(columns=GAIN_COLUMNS))
    finite = [bool(torch.isfinite(h).all()) for h in result["hidden"]]
    first_bad = next((k for k, ok in zip(result["sublayers"], finite) if not ok), None)
    probes = pd.DataFrame([{"step": 0, **r} for r in result["rows"] + massive_rows(result["hidden"], result["sublayers"])],
                          columns=PROBE_COLUMNS)
    bounds = pd.DataFrame([{"step": 0, **r} for r in result["bound_rows"]], columns=BOUND_COLUMNS)
    write_csv(out / "probes.csv", probes)
    write_csv(out / "bounds.csv", bounds)
    checks = bounds[bounds["kind"] == "check"]
    summary = {"model": name or short or str(path), "model_type": hf_config.model_type, "class": type(model).__name__,
               "placement": fam.placement, "norm": fam.norm, "note": fam.note, "n_layer": hf_config.num_hidden_layers,
               "d_model": hf_config.hidden_size, "n_params": n_params, "tokens": int(x.numel()),
               "batch": int(x.shape[0]), "dtype": dtype, "bos_token": bos,
               "finite": all(finite), "first_nonfinite_sublayer": first_bad,
               # an encoder has no next-token loss: its objective (the adjoints' source) is reported apart
               "loss": result["loss"] if math.isfinite(result["loss"]) and not fam.encoder else None,
               "objective": ("surrogate: r . mean-pooled x^(K), r ~ N(0, I/d) (seed 0)" if fam.encoder
                             else "next-token cross-entropy (nats)"),
               "objective_value": result["loss"] if math.isfinite(result["loss"]) else None,
               "bound_checks": len(checks), "bound_violations": int(checks["violation"].sum()),
               "max_ratio": float(checks["ratio"].max()) if len(checks) else None,
               "bounds": "F4, F6 and B3 on lnstab's own GPT" if gpt2 else bounds_note(fam, len(bounds)), **extra,
               "peak_rss_bytes": peak_rss_bytes(), "seconds": time.perf_counter() - t0}
    write_json(out / "summary.json", summary)
    write_json(out / "provenance.json", provenance_record(path, hf_config, short))
    end = "finite" if all(finite) else f"NOT finite from x^({first_bad}) on (dtype {dtype}: try float32)"
    say(f"{out}: stream {end}; {summary['bound_checks']} bound checks, {summary['bound_violations']} violations; "
        f"{summary['seconds']:.0f} s, peak {summary['peak_rss_bytes'] / 2**30:.1f} GiB")
    return summary


def bounds_note(fam: Family, rows: int) -> str:
    """What bounds.csv holds for the family, and why where it holds nothing."""
    if rows:
        return {"post": "F3: every x^(k) is a norm's output (rows ln_identity, not counted as checks)",
                "peri": "F2 with the output norms' gains", "output": "F2 with the output norms' gains",
                "pre": "F10: the increments' bounds read the input norms and the weights"}.get(fam.placement, "")
    if fam.placement == "pre":
        return "none proven for this family's branches (docs/bounds.md, 'Real models')"
    return f"none proven for placement {fam.placement} with this family's conventions"


def provenance_record(path: Path, hf_config, short: str | None) -> dict:
    """Versions, the configuration, and for a GGUF file or an installed model the file's sha256,
    package, licence and each tensor type's count."""
    record = {"transformers": transformers_version(), "torch": str(torch.__version__)}
    if path.suffix == ".gguf":
        record.update(gguf_file=path.name, file_sha256=file_sha256(path), quantisation=gguf_quantisation(path))
        config = hf_config.to_dict()
    else:
        config_text = (path / "config.json").read_bytes()
        record["config_sha256"] = hashlib.sha256(config_text).hexdigest()
        config = json.loads(config_text)
    if short is not None:
        m = INSTALLED[short]
        record.update(installed=short, package=m.package, licence=m.licence, pinned_sha256=m.sha256)
    record["model_config"] = config
    return record


def inspect_models(models: list[str], out: str | Path, text: str | None = None, tokens: int = 256, batch: int = 2,
                   jacobians: bool = False, dtype: str = "float32", tokenizer=None, quantise=()) -> dict[str, dict]:
    """``lnstab inspect``: each model inspected (one: into ``out``; several: into out/<name>/, named
    as the workflow names them), then the inspected tables and fig_inspect of all of them in
    ``out``. {name: summary}."""
    from ..figures import make_figure
    from .tables import write_inspection_tables

    out = Path(out)
    names = inspection_names(models)
    folders = {name: out if len(names) == 1 else out / name for name in names}
    # one model is recorded by its folder, as before; several by their names
    summaries = {name: inspect(model, folders[name], text, tokens, batch, jacobians, dtype,
                               name=name if len(names) > 1 else None, tokenizer=tokenizer, quantise=quantise)
                 for name, model in names.items()}
    write_inspection_tables(folders, out)
    make_figure("fig9_inspect", {"inspected": out / "inspected.csv"}, out / "fig_inspect")
    return summaries
