"""transformers' own models measured through forward hooks: which family is which placement, and
the stream x^(k) read from the model as it runs.

x^(2i) is layer i's input, x^(2i+1) the stream between its attention and MLP sub-layers (the
family's ``mid`` point), x^(2L) the last layer's output, before any final norm. x^(0) is what the
first layer receives: Gemma's embeddings already multiplied by sqrt(d), BERT's after its embedding
LayerNorm. For Post-LN (BERT) the sum x + F(x) before each LayerNorm is read too, as point
``sum`` (where a Post-LN model's massive activations live; the stream itself is normalised).

Sequences go through the model one at a time: every sequence's stream and adjoint are those of
the batch (attention never mixes sequences), and the logits of one sequence are all that is held
(Gemma 3's vocabulary of 262k makes a batch's logits the largest tensor of the pass).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..config import MEASURED_ONLY_PLACEMENTS, ConfigError
from ..model import lm_loss


class Family(NamedTuple):
    placement: str | None
    norm: str
    layers: str  # the module list of the layers
    mid: tuple[str, str] | None  # (module of a layer, "input" | "output") read as x^(2i+1); None: parallel
    note: str
    # per layer, the norms that bound the two sub-layers: the branch's output norm (peri, output)
    # or the norm on the sum (post); empty where no bound of docs/bounds.md reads norms alone
    step_norms: tuple[str, str] = ()
    gain_offset: float = 0.0  # a norm's gain is gain_offset + weight (Gemma's RMSNorm: 1 + w)
    encoder: bool = False  # bidirectional, no language-model head: the surrogate objective
    # Pre-LN with a gated MLP and (grouped-query) attention: the input norms of the two sub-layers,
    # which the weight-based bound F10 reads with the branches' matrices
    input_norms: tuple[str, str] = ()


PERI_NORMS = ("post_attention_layernorm", "post_feedforward_layernorm")
BERT_NORMS = ("attention.output.LayerNorm", "output.LayerNorm")
GATED_PRE = dict(placement="pre", norm="rmsnorm", layers="model.layers", mid=("post_attention_layernorm", "input"),
                 input_norms=("input_layernorm", "post_attention_layernorm"))
FAMILIES = {
    "llama": Family(**GATED_PRE, note=""),
    "mistral": Family(**GATED_PRE, note=""),
    "qwen2": Family(**GATED_PRE, note=""),
    "qwen3": Family(**GATED_PRE, note="QK-norm in attention"),
    "olmo2": Family("output", "rmsnorm", "model.layers", ("mlp", "input"), "QK-norm in attention", PERI_NORMS),
    "gemma2": Family("peri", "rmsnorm", "model.layers", ("pre_feedforward_layernorm", "input"),
                     "RMSNorm gain (1 + w); embeddings scaled by sqrt(d)", PERI_NORMS, 1.0),
    "gemma3_text": Family("peri", "rmsnorm", "model.layers", ("pre_feedforward_layernorm", "input"),
                          "RMSNorm gain (1 + w); embeddings scaled by sqrt(d); QK-norm", PERI_NORMS, 1.0),
    "bert": Family("post", "layernorm", "encoder.layer", (BERT_NORMS[0], "output"),
                   "encoder: bidirectional attention; the objective is a fixed random functional of the "
                   "mean-pooled output; the sum before each LayerNorm is point 'sum'", BERT_NORMS, 0.0, True),
    "opt": Family(None, "layernorm", "model.decoder.layers", None, "Pre-LN or Post-LN by do_layer_norm_before"),
    "gpt_neox": Family(None, "layernorm", "gpt_neox.layers", None, "parallel attention and MLP by use_parallel_residual"),
}
SURROGATE_SEED = 0  # the encoder's objective: r . mean_t x^(K)_t, r ~ N(0, I/d) from this seed


def family(hf_config) -> Family:
    """The Family of a transformers config (a ConfigError naming the supported ones otherwise)."""
    kind = hf_config.model_type
    if kind not in FAMILIES:
        raise ConfigError(f"model type {kind!r} ({type(hf_config).__name__}) is not supported; supported: gpt2, "
                          + ", ".join(FAMILIES))
    fam = FAMILIES[kind]
    if kind == "opt":
        pre = hf_config.do_layer_norm_before
        fam = fam._replace(placement="pre" if pre else "post",
                           mid=("final_layer_norm", "input") if pre else ("self_attn_layer_norm", "output"))
    if kind == "gpt_neox":
        parallel = hf_config.use_parallel_residual
        fam = fam._replace(placement=MEASURED_ONLY_PLACEMENTS[0] if parallel else "pre",
                           mid=None if parallel else ("post_attention_layernorm", "input"))
    return fam


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def _input(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def hooked_stream(hf_model, fam: Family) -> tuple[list, list, list]:
    """Forward hooks that collect, during one forward pass, the stream x^(k) and (Post-LN) the sums
    before each norm on the stream: (stream, sums, hook handles). Each tensor stays in the graph."""
    layers = hf_model.get_submodule(fam.layers)
    stream, sums, handles = [], [], []

    def layer_input(module, args, kwargs):
        if not stream:  # x^(0): the first layer's input (embeddings, scaled where the family scales)
            stream.append(_input(args, kwargs))

    handles.append(layers[0].register_forward_pre_hook(layer_input, with_kwargs=True))
    for layer in layers:
        if fam.mid is not None:
            module, side = layer.get_submodule(fam.mid[0]), fam.mid[1]
            if side == "input":
                handles.append(module.register_forward_pre_hook(lambda m, a, kw: stream.append(_input(a, kw)),
                                                                with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(lambda m, a, out: stream.append(_first(out))))
        handles.append(layer.register_forward_hook(lambda m, a, out: stream.append(_first(out))))
        if fam.placement == "post" and fam.step_norms:
            for name in fam.step_norms:
                handles.append(layer.get_submodule(name).register_forward_pre_hook(
                    lambda m, a, kw: sums.append(_input(a, kw)), with_kwargs=True))
    return stream, sums, handles


def surrogate_direction(d: int) -> torch.Tensor:
    """The encoder's fixed functional r (float32), the same for every run of every model of width d."""
    return torch.randn(d, generator=torch.Generator().manual_seed(SURROGATE_SEED)) / d ** 0.5


def objective(hf_model, fam: Family, x: torch.Tensor, y: torch.Tensor, stream: list) -> torch.Tensor:
    """The scalar whose gradient is the adjoint: the next-token loss of a decoder; for an encoder,
    r . (mean over tokens of x^(K)) averaged over sequences (its own head is not part of the model)."""
    if fam.encoder:
        hf_model(input_ids=x)
        top = stream[-1]
        return (top.mean(1) @ surrogate_direction(top.shape[-1]).to(top.dtype)).mean()
    return lm_loss(hf_model(input_ids=x).logits, y)


def probe_hooked(hf_model, fam: Family, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The stream of a transformers model on a batch, one sequence at a time: ``hidden`` and
    ``adjoints`` (per point, (B, T, d) float32: dObjective/dx^(k) of the batch's mean objective),
    ``sums`` (Post-LN: per layer's two norms, (B, T, d)), ``sublayers`` (k of each point; a
    parallel block is one step, so its points are x^(2i)), ``loss`` (the mean objective) and
    ``losses`` (each sequence's).
    Parameters are left alone: the weights hold no gradient (load_checkpoint), so the stream
    enters autograd at the embeddings."""
    B = x.shape[0]
    hidden, adjoints, sums, losses = [], [], [], []  # per point, (B, T, d): filled a sequence at a time
    for b in range(B):
        stream, summed, handles = hooked_stream(hf_model, fam)
        handles.append(hf_model.get_input_embeddings().register_forward_hook(lambda m, a, out: out.requires_grad_()))
        try:
            loss = objective(hf_model, fam, x[b:b + 1], y[b:b + 1], stream)
        finally:
            for h in handles:
                h.remove()
        grads = torch.autograd.grad(loss / B, stream)
        T = x.shape[1]  # (OPT flattens its MLP's input to (B T, d): every point is read as (T, d))
        for into, got in ((hidden, stream), (adjoints, grads), (sums, summed)):
            if b == 0:
                into += [torch.empty((B, T, t.shape[-1]), dtype=torch.float32) for t in got]
            for whole, t in zip(into, got):
                whole[b] = t.detach().reshape(T, -1)
        losses.append(loss.item())
    step = 1 if fam.mid is not None else 2
    return {"hidden": hidden, "adjoints": adjoints, "sums": sums, "sublayers": [step * k for k in range(len(hidden))],
            "loss": sum(losses) / B, "losses": losses}
