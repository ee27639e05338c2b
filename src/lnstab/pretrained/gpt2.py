"""GPT-2 (gpt2 to gpt2-xl) in lnstab's own GPT, and back.

GPT-2 is exactly lnstab's Pre-LN GPT at dt = 1 with biases, tied embeddings, LayerNorm eps
``layer_norm_epsilon`` and GELU's tanh approximation (``model.gelu: tanh``); its four Conv1D
weights per block are stored transposed to nn.Linear's. Loaded this way, every probe, bound and
Jacobian estimate of the package runs unchanged on it.
"""
from __future__ import annotations

import torch

from ..config import ConfigError, ModelConfig

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


def gpt2_from_tensors(hf_config, tensors):
    """lnstab's GPT of a GPT-2 config with the weights of ``tensors``, pairs (transformers' key,
    tensor) taken one at a time: the model is built without memory (meta device) and each weight
    moved in as it comes, so loading holds one copy of the weights and one tensor more. Keys with
    or without the ``transformer.`` prefix (GPT2LMHeadModel or GPT2Model); attention's causal-mask
    buffers of older checkpoints and the tied head are skipped. A ConfigError for a missing weight
    or one whose shape is not the config's."""
    from ..model import GPT

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


