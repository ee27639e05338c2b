"""Reference losses of a corpus: what a model must beat to have learned anything.

The unigram and bigram cross-entropies of the validation split under counts of the training
split (nats per token), with add-one (Laplace) smoothing so that a token or pair never seen in
training costs a finite amount. A language model whose validation loss is above the bigram
cross-entropy has learned less than a table of character pairs: the paper's claims are about
trained Transformers, so such a run tests nothing about them (docs/claims.md).
"""
from __future__ import annotations

import numpy as np

# a run whose final validation loss is within this fraction of the unigram cross-entropy
# (or above it) learned nothing beyond token frequencies
NOT_LEARNING_MARGIN = 0.02
# bigram counts of a huge pre-tokenized corpus: the first this-many training tokens suffice
MAX_BASELINE_TOKENS = 50_000_000


def cross_entropies(train: np.ndarray, val: np.ndarray, vocab_size: int) -> dict[str, float]:
    """{'unigram_nats', 'bigram_nats'} of ``val`` under add-one smoothed counts of ``train``."""
    train = np.asarray(train[:MAX_BASELINE_TOKENS], dtype=np.int64)
    val = np.asarray(val, dtype=np.int64)
    V = int(vocab_size)
    uni = np.bincount(train, minlength=V).astype(np.float64)
    p_uni = (uni + 1.0) / (uni.sum() + V)
    unigram = float(-np.log(p_uni[val]).mean())
    # bigram p(b | a) = (n_ab + 1) / (n_a + V), n_a counting a as a left context
    pairs, counts = np.unique(train[:-1] * V + train[1:], return_counts=True)
    left = np.bincount(train[:-1], minlength=V).astype(np.float64)
    want = val[:-1] * V + val[1:]
    pos = np.searchsorted(pairs, want).clip(max=len(pairs) - 1)
    n_ab = np.where(pairs[pos] == want, counts[pos], 0).astype(np.float64)
    bigram = float(-np.log((n_ab + 1.0) / (left[val[:-1]] + V)).mean())
    return {"unigram_nats": unigram, "bigram_nats": bigram}


def learned_status(final_val_loss: float | None, unigram: float, bigram: float) -> tuple[bool, bool]:
    """(learned, not_learning): learned = below the bigram baseline; not learning = within
    NOT_LEARNING_MARGIN of the unigram baseline or above it (a diverged run has no loss: neither
    learned nor judged, it is not learning)."""
    if final_val_loss is None or not np.isfinite(final_val_loss):
        return False, True
    return bool(final_val_loss < bigram), bool(final_val_loss >= (1 - NOT_LEARNING_MARGIN) * unigram)


def learned_line(name: str, val_loss: float | None, train: np.ndarray, val: np.ndarray, vocab_size: int) -> str:
    """One line: whether a run beat its corpus's bigram baseline (one that did not has learned
    less than a table of token pairs and tests nothing about trained models)."""
    base = cross_entropies(train, val, vocab_size)
    learned, _ = learned_status(val_loss, base["unigram_nats"], base["bigram_nats"])
    return (f"{name}: {'learned' if learned else 'did NOT learn'}: validation loss "
            f"{val_loss if val_loss is not None else float('nan'):.4f} against the corpus's bigram baseline "
            f"{base['bigram_nats']:.4f}" + ("" if learned else " (a run above it tests nothing about trained models)"))
