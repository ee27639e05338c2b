"""Pretrained checkpoints: GPT-2 of transformers loaded into lnstab's GPT, and ``lnstab inspect``,
on tiny randomly initialised models saved with save_pretrained (nothing is downloaded)."""
import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

transformers = pytest.importorskip("transformers")

from lnstab.config import ConfigError, load_config  # noqa: E402
from lnstab.model import GPT  # noqa: E402
from lnstab.pretrained import from_gpt2, load_checkpoint, to_gpt2  # noqa: E402

GPT2_VOCAB = 50257


def tiny_gpt2(activation="gelu_new", vocab=GPT2_VOCAB, seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=40, n_embd=48, n_layer=3, n_head=4,
                                     activation_function=activation)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # trained-looking weights: LayerNorm gains and biases away from 1 and 0
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lnstab.cli", *args], capture_output=True, text=True, **kw)


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_gpt2_logits_equal_transformers(activation):
    hf = tiny_gpt2(activation)
    ours = from_gpt2(hf).eval()
    idx = torch.randint(GPT2_VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf(idx).logits
        got = ours(idx)[0]
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_round_trip_is_exact():
    cfg = load_config(None, ["model.n_layer=2", "model.d_model=32", "model.n_head=4", "model.block_size=16",
                             "model.vocab_size=70", "model.gelu=tanh"]).model
    torch.manual_seed(3)
    ours = GPT(cfg)
    back = from_gpt2(to_gpt2(ours))
    a, b = ours.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_only_a_pre_ln_gpt_is_a_gpt2():
    cfg = load_config(None, ["model.placement=peri", "model.vocab_size=70"]).model
    with pytest.raises(ConfigError, match="placement peri"):
        to_gpt2(GPT(cfg))


def test_inspect_writes_a_runs_tables_with_zero_violations(tmp_path):
    hf = tiny_gpt2()
    hf.save_pretrained(tmp_path / "model")
    res = cli("inspect", str(tmp_path / "model"), "--tokens", "32", "--batch", "2", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["placement"] == "pre" and s["n_layer"] == 3 and s["finite"]
    assert s["bound_checks"] > 0 and s["bound_violations"] == 0
    probes = pd.read_csv(tmp_path / "out" / "probes.csv")
    mean_norm = probes[probes["quantity"] == "mean_norm"].sort_values("sublayer")
    assert list(mean_norm["sublayer"]) == list(range(7))  # x^(0..2L)
    # the stream at block boundaries is transformers' own hidden states on the same tokens
    from lnstab.pretrained import default_text, tokens_for

    ids = tokens_for(tmp_path / "model", GPT2_VOCAB, default_text())[:64].view(2, 32)
    with torch.no_grad():
        states = hf(ids, output_hidden_states=True).hidden_states
    for layer in range(3):  # hidden_states[i] is the input of block i; the last has ln_f applied
        want = states[layer].double().norm(dim=-1).mean().item()
        got = mean_norm[mean_norm["sublayer"] == 2 * layer]["value"].item()
        assert got == pytest.approx(want, rel=1e-5)
    assert json.loads((tmp_path / "out" / "provenance.json").read_text())["transformers"] == transformers.__version__


def _bert(folder):
    transformers.BertModel(transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)


def _mismatched(folder):
    tiny_gpt2().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_embd": 64}))


def _no_tokenizer(folder):
    tiny_gpt2(vocab=300).save_pretrained(folder)


def _truncated(folder):
    tiny_gpt2().save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])


def _config_text(text):
    def make(folder):
        folder.mkdir()
        (folder / "config.json").write_text(text)
    return make


@pytest.mark.parametrize("make, needle", [
    (None, "not a folder"),
    (lambda f: f.mkdir(), "no config.json"),
    (_config_text('{"model_type": '), "not a valid JSON file"),
    (_config_text('{"model_type": "frobnicator"}'), "does not recognize this architecture"),
    (_config_text('{"model_type": "custom", "auto_map": {"AutoConfig": "conf.Custom"}}'), "custom code"),
    (lambda f: f.write_text("x"), "not a folder"),
    (_mismatched, "do not load"),
    (_truncated, "truncated"),
    (_no_tokenizer, "no tokenizer"),
])
def test_bad_checkpoints_are_one_line(tmp_path, make, needle):
    folder = tmp_path / "model"
    if make is not None:
        make(folder)
    res = cli("inspect", str(folder), "--tokens", "16", "--out", str(tmp_path / "out"), stdin=subprocess.DEVNULL,
              timeout=120)  # a folder asking for its own code is refused, never prompted for
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and needle in lines[-1] and "Traceback" not in res.stderr, res.stderr[-2000:]


def test_a_tokenizer_of_another_folder_is_used_when_named(tmp_path):
    """A folder without a tokenizer and a vocabulary other than GPT-2's: --tokenizer names one."""
    tiny_gpt2(vocab=300).save_pretrained(tmp_path / "model")
    tok = tmp_path / "tok"
    tok.mkdir()  # a word-level tokenizer of 300 ids, built offline with the tokenizers library
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted(set(__import__("lnstab.pretrained", fromlist=["x"]).default_text().split()))[:299]
    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    transformers.PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]").save_pretrained(tok)
    res = cli("inspect", str(tmp_path / "model"), "--tokenizer", str(tok), "--tokens", "16",
              "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["tokens"] == 2 * 16
    res = cli("inspect", str(tmp_path / "model"), "--tokenizer", str(tmp_path), "--tokens", "16",
              "--out", str(tmp_path / "out2"))
    assert res.returncode == 2 and "--tokenizer" in res.stderr and "Traceback" not in res.stderr


def test_running_out_of_memory_is_one_line_even_without_a_message(monkeypatch, tmp_path, capsys):
    import lnstab.pretrained
    from lnstab.cli import main

    def no_memory(*args, **kwargs):
        raise MemoryError()  # numpy and torch raise it with an empty message

    monkeypatch.setattr(lnstab.pretrained, "inspect_models", no_memory)
    assert main(["inspect", "smollm2-135m", "--out", str(tmp_path / "out")]) == 2
    assert "out of memory" in capsys.readouterr().err


def test_text_shorter_than_the_batch_is_one_line(tmp_path):
    tiny_gpt2().save_pretrained(tmp_path / "model")
    (tmp_path / "short.txt").write_text("To be, or not to be.")
    res = cli("inspect", str(tmp_path / "model"), "--text", str(tmp_path / "short.txt"), "--tokens", "32",
              "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "the text has" in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("save", [{"max_shard_size": "200KB"}, {"safe_serialization": False}],
                         ids=["safetensors-shards", "pytorch_model.bin"])
def test_gpt2_weights_load_from_shards_and_bin_files(tmp_path, save):
    hf = tiny_gpt2(seed=6)
    hf.save_pretrained(tmp_path / "m", **save)
    ours, _ = load_checkpoint(tmp_path / "m")
    want = from_gpt2(hf).state_dict()
    got = ours.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert ours.lm_head.weight is ours.wte.weight and all(p.requires_grad for p in ours.parameters())


def test_load_checkpoint_reads_the_folder_it_was_given(tmp_path):
    hf = tiny_gpt2(seed=5)
    hf.save_pretrained(tmp_path / "m")
    ours, config = load_checkpoint(tmp_path / "m")
    assert config.n_layer == 3 and torch.equal(ours.wte.weight, hf.transformer.wte.weight)


# -- other families, through hooks ------------------------------------------------------------
SMALL = dict(vocab_size=GPT2_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
             num_attention_heads=4, max_position_embeddings=64)
FAMILY_MODELS = {  # model type: (config class, model class, arguments, placement, norm)
    "llama": ("LlamaConfig", "LlamaForCausalLM", {**SMALL, "num_key_value_heads": 2}, "pre", "rmsnorm"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {**SMALL, "num_key_value_heads": 2}, "pre", "rmsnorm"),
    "mistral": ("MistralConfig", "MistralForCausalLM", {**SMALL, "num_key_value_heads": 2}, "pre", "rmsnorm"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {**SMALL, "num_key_value_heads": 2, "head_dim": 8}, "pre", "rmsnorm"),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {**SMALL, "num_key_value_heads": 2}, "output", "rmsnorm"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {**SMALL, "num_key_value_heads": 2, "head_dim": 8}, "peri",
               "rmsnorm"),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", {**SMALL, "num_key_value_heads": 2, "head_dim": 8},
                    "peri", "rmsnorm"),
    "opt": ("OPTConfig", "OPTForCausalLM", {"vocab_size": GPT2_VOCAB, "hidden_size": 32, "ffn_dim": 64,
                                             "num_hidden_layers": 3, "num_attention_heads": 4,
                                             "max_position_embeddings": 64, "word_embed_proj_dim": 32}, "pre",
            "layernorm"),
    "opt-post": ("OPTConfig", "OPTForCausalLM", {"vocab_size": GPT2_VOCAB, "hidden_size": 32, "ffn_dim": 64,
                                                  "num_hidden_layers": 3, "num_attention_heads": 4,
                                                  "max_position_embeddings": 64, "word_embed_proj_dim": 32,
                                                  "do_layer_norm_before": False}, "post", "layernorm"),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", SMALL, "parallel", "layernorm"),
}


def _save_family(name, folder):
    cfg_cls, model_cls, kwargs, _, _ = FAMILY_MODELS[name]
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**kwargs)).eval()
    with torch.no_grad():  # norm gains away from their init, as training leaves them
        for n, p in model.named_parameters():
            if "norm" in n and p.ndim == 1:
                p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(folder)
    return model


def test_several_models_are_inspected_into_one_figure(tmp_path):
    """lnstab inspect A B: each model in OUT/<name>/, their rows in one inspected table and fig_inspect."""
    tiny_gpt2().save_pretrained(tmp_path / "gpt2-tiny")
    _save_family("llama", tmp_path / "llama-tiny")
    res = cli("inspect", str(tmp_path / "gpt2-tiny"), str(tmp_path / "llama-tiny"), "--tokens", "16",
              "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr[-3000:]
    models = pd.read_csv(tmp_path / "out" / "inspected_models.csv").set_index("name")
    assert models.loc["gpt2-tiny", "placement"] == "pre" and models.loc["llama-tiny", "norm"] == "rmsnorm"
    assert models.loc["gpt2-tiny", "bound_violations"] == 0 and models.loc["gpt2-tiny", "bound_checks"] > 0
    for name in models.index:
        probes = pd.read_csv(tmp_path / "out" / name / "probes.csv")
        long = pd.read_csv(tmp_path / "out" / "inspected.csv")
        mine = long[(long["name"] == name) & (long["quantity"] == "mean_norm")].sort_values("sublayer")
        want = probes[probes["quantity"] == "mean_norm"].sort_values("sublayer")
        assert list(mine["value"]) == pytest.approx(list(want["value"]), rel=1e-5)  # (tables keep 6 digits)
    assert (tmp_path / "out" / "fig_inspect.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", list(FAMILY_MODELS))
def test_a_family_is_detected_and_its_stream_is_transformers_own(tmp_path, name):
    model = _save_family(name, tmp_path / "model")
    res = cli("inspect", str(tmp_path / "model"), "--tokens", "16", "--batch", "2", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr[-3000:]
    placement, norm = FAMILY_MODELS[name][3:]
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (s["placement"], s["norm"], s["finite"]) == (placement, norm, True)
    assert f"placement {placement}" in res.stderr
    probes = pd.read_csv(tmp_path / "out" / "probes.csv")
    mean_norm = probes[probes["quantity"] == "mean_norm"].set_index("sublayer")["value"]
    expected_points = 4 if placement == "parallel" else 7  # x^(0..2L), a parallel block one step
    assert len(mean_norm) == expected_points and probes["value"].notna().all()
    assert (probes[probes["quantity"] == "adjoint_norm"]["value"] > 0).all()
    from lnstab.pretrained import default_text, tokens_for

    ids = tokens_for(tmp_path / "model", GPT2_VOCAB, default_text())[:32].view(2, 16)
    with torch.no_grad():
        states = model(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in range(3):  # the input of every layer: x^(2i)
        want = states[layer].double().norm(dim=-1).mean().item()
        assert mean_norm[2 * layer] == pytest.approx(want, rel=1e-5), layer
    bounds = pd.read_csv(tmp_path / "out" / "bounds.csv")
    from lnstab.pretrained import FAMILIES

    fam = FAMILIES[name.split("-")[0]]
    if (fam.step_norms or fam.input_norms) and name != "opt-post":  # proven (docs/bounds.md, F2, F3, F10)
        branch_rows = 6 if fam.input_norms else 0  # F10 checks each branch against its slope
        assert len(bounds) == 4 * 7 + branch_rows and not bounds["violation"].any()
        assert s["bound_checks"] == (0 if placement == "post" else 4 * 6 + branch_rows)
    else:  # no bound proven for the family's branches: none reported, and the summary says so
        assert len(bounds) == 0 and s["bounds"].startswith("none proven")


@pytest.mark.parametrize("name", ["llama", "olmo2", "gemma2", "gemma3_text"])
def test_sub_layer_points_are_the_familys_equations(tmp_path, name):
    """x^(2i+2) - x^(2i+1) is the MLP sub-layer's term: mlp(norm(h)) for Pre-LN, norm(mlp(h)) for
    OLMo 2's output norm, post(mlp(pre(h))) for Gemma's Peri-LN."""
    from lnstab.pretrained import FAMILIES, probe_hooked

    model = _save_family(name, tmp_path / "model")
    ids = torch.randint(GPT2_VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
    hidden = probe_hooked(model, FAMILIES[name], ids, ids)["hidden"]
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            h = hidden[2 * i + 1]
            peri = lambda: layer.post_feedforward_layernorm(layer.mlp(layer.pre_feedforward_layernorm(h)))  # noqa: E731
            term = {"llama": lambda: layer.mlp(layer.post_attention_layernorm(h)),
                    "olmo2": lambda: layer.post_feedforward_layernorm(layer.mlp(h)),
                    "gemma2": peri, "gemma3_text": peri}[name]()
            torch.testing.assert_close(hidden[2 * i + 2] - h, term, rtol=1e-5, atol=1e-5)


def test_an_unsupported_architecture_names_the_supported_ones(tmp_path):
    torch.manual_seed(0)
    transformers.GPTJForCausalLM(transformers.GPTJConfig(vocab_size=64, n_embd=32, n_layer=1, n_head=4,
                                                         n_positions=32, rotary_dim=4)).save_pretrained(tmp_path / "m")
    res = cli("inspect", str(tmp_path / "m"), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "'gptj'" in res.stderr and "llama" in res.stderr and "Traceback" not in res.stderr


def test_a_batch_beyond_the_memory_is_refused_with_what_fits(tmp_path, monkeypatch):
    from lnstab import pretrained
    from lnstab.pretrained import inspection

    tiny_gpt2().save_pretrained(tmp_path / "model")
    model, config = pretrained.load_checkpoint(tmp_path / "model")
    n = sum(p.numel() for p in model.parameters())
    need = [pretrained.bytes_needed(config, n, b, 32, "float32") for b in (1, 2, 3)]
    assert need[0] < need[1] < need[2]
    loaded = pretrained.RUNTIME_BYTES + 4 * n  # the interpreter and float32 weights, in memory when the check runs
    monkeypatch.setattr(inspection, "available_bytes", lambda: (need[1] + need[2]) / 2 - loaded)  # two fit, not three
    with pytest.raises(ConfigError, match="--batch 2"):
        pretrained.inspect(tmp_path / "model", tmp_path / "out", tokens=32, batch=4, verbose=False)
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(inspection, "available_bytes", lambda: 0.9 * need[0] - loaded)
    with pytest.raises(ConfigError, match="fewer --tokens"):
        pretrained.inspect(tmp_path / "model", tmp_path / "out", tokens=32, batch=4, verbose=False)


def test_a_model_name_is_read_from_the_local_cache_only(tmp_path, monkeypatch):
    """A name resolves through the transformers cache (HF_HUB_CACHE) and never downloads: not
    cached, it stops with one line saying so."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--tiny--gpt2" / "snapshots" / ("0" * 40)
    tiny_gpt2().save_pretrained(snapshot)
    (cache / "models--tiny--gpt2" / "refs").mkdir()
    (cache / "models--tiny--gpt2" / "refs" / "main").write_text("0" * 40)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    import os

    res = cli("inspect", "tiny/gpt2", "--tokens", "16", "--out", str(tmp_path / "out"), env={**os.environ, **env})
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["model"] == str(snapshot)
    res = cli("inspect", "someone/absent-model", "--out", str(tmp_path / "out2"), env={**os.environ, **env})
    assert res.returncode == 2 and "local cache" in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.fixture(scope="module")
def trained_pre_run(tmp_path_factory):
    from lnstab.study import prepare_corpus, train_grid_point

    tmp = tmp_path_factory.mktemp("roundtrip")
    meta = tmp / "data" / "meta.json"
    prepare_corpus({"source": "shakespeare"}, tmp / "data", meta, tmp / "baselines")
    base = {"model": {"d_model": 16, "n_head": 2, "block_size": 16},
            "train": {"steps": 6, "batch_size": 2, "warmup_steps": 1, "eval_interval": 3, "ckpt_interval": 0,
                      "log_interval": 3, "eval_batches": 1},
            "probe": {"interval": 3, "batch_size": 2, "jacobian_iters": 2}}
    params = {"placement": "pre", "n_layer": 2, "dt": 1.0, "weight_decay": 0.1, "lr": 0.003, "seed": 0,
              "role": "study"}
    train_grid_point(params, base, meta, tmp / "run")
    return tmp / "run", meta


def test_an_exported_run_inspects_to_its_own_final_probe(trained_pre_run, tmp_path):
    from lnstab.pretrained import inspect_run

    run, meta = trained_pre_run
    out = inspect_run(run, meta, tmp_path / "inspected")
    record = json.loads((tmp_path / "inspected" / "roundtrip.json").read_text())
    final = pd.read_csv(run / "probes.csv").query("step == 6")
    assert record["probes"] == {"rows": len(final), "missing": 0, "max_abs_diff": 0.0}
    assert record["bounds"]["rows"] > 0 and record["bounds"]["missing"] == 0
    assert record["bounds"]["max_abs_diff"] == 0.0
    assert out["bound_checks"] > 0 and out["bound_violations"] == 0 and out["placement"] == "pre"


def test_a_round_trip_that_differs_is_an_error(trained_pre_run, tmp_path):
    from lnstab.pretrained import inspect_run

    run, meta = trained_pre_run
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(run, copy)
    probes = pd.read_csv(copy / "probes.csv")
    last = (probes["step"] == probes["step"].max()) & (probes["quantity"] == "mean_abs")
    probes.loc[last.idxmax(), "value"] *= 1 + 1e-9  # one value of the final probe, off in its 9th digit
    probes.to_csv(copy / "probes.csv", index=False)
    with pytest.raises(ConfigError, match="differs from run"):
        inspect_run(copy, meta, tmp_path / "inspected")


def test_a_stream_that_overflows_in_bfloat16_is_reported_with_its_layer(tmp_path):
    """A Llama whose second layer's MLP output is beyond bfloat16's range: inspect in
    bfloat16 ends with the stream reported non-finite from that layer's MLP point on (x^(4)),
    the tables written, no traceback, and the points before it finite."""
    model = _save_family("llama", tmp_path / "model")
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.fill_(1e20)  # each finite in bfloat16, their product is not
        model.model.layers[1].mlp.down_proj.weight.fill_(1e20)
    model.save_pretrained(tmp_path / "model")
    res = cli("inspect", str(tmp_path / "model"), "--tokens", "16", "--batch", "2", "--dtype", "bfloat16",
              "--out", str(tmp_path / "out"))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (s["finite"], s["first_nonfinite_sublayer"], s["dtype"]) == (False, 4, "bfloat16")
    assert "NOT finite from x^(4) on" in res.stderr
    probes = pd.read_csv(tmp_path / "out" / "probes.csv")
    before = probes[(probes["quantity"] == "mean_norm") & (probes["sublayer"] < 4)]["value"]
    assert len(before) == 4 and before.map(math.isfinite).all()
