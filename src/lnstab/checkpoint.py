"""A training run's files: what its checkpoint holds, how it is written and how a run resumes
from it, and the summary that ends a run.

A checkpoint holds the config, the corpus fingerprint, every field of the run's RunState (step,
rows so far, segments, summary), the model and optimizer, and every RNG state (the training
batches' generator, torch, CUDA, numpy, python), so that a run resumed from it continues
bit-identically. Rank 0 alone writes it (the ranks hold the same weights and RNG states); the
file's records are verified on reading (lnstab.runfolder.read_checkpoint).
"""
from __future__ import annotations

import contextlib
import json
import random
from dataclasses import asdict, fields
from pathlib import Path

import torch

from .baselines import learned_line
from .config import RunConfig
from .io import save_torch, write_csv, write_json
from .runfolder import (RunError, RunState, StaleCheckpoint, _diff_keys, numpy_rng_state, provenance,
                        read_checkpoint, run_tables, same_code, segment, set_numpy_rng_state)


def own_storage(obj, copies: dict | None = None):
    """``obj`` with every tensor that is a view into a larger one (a run of a training group: its
    slice of the stacked weights, lnstab.groups) copied out, so that torch.save writes this run's
    numbers only; tensors shared within ``obj`` (tied weights) stay shared."""
    copies = {} if copies is None else copies
    if isinstance(obj, dict):
        return {k: own_storage(v, copies) for k, v in obj.items()}
    if isinstance(obj, list):
        return [own_storage(v, copies) for v in obj]
    if torch.is_tensor(obj) and obj.untyped_storage().nbytes() > obj.numel() * obj.element_size():
        key = (obj.data_ptr(), obj.shape)
        if key not in copies:
            copies[key] = obj.clone()
        return copies[key]
    return obj


def capture(run) -> dict:
    """Everything a resumed run needs, as one dict (torch.save writes it)."""
    return {
        "config": run.cfg.to_dict(), "data_fingerprint": run.corpus.fingerprint, **asdict(run.state),
        "model": own_storage(run.model.state_dict()), "optimizer": own_storage(run.optimizer.state_dict()),
        "train_gen": run.train_gen.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy_rng": numpy_rng_state(), "python_rng": random.getstate(),
    }


def save(run) -> None:
    """ckpt.pt, the tables so far and provenance.json, each written atomically (rank 0)."""
    if not run.group.main:
        return
    if run.state.segments:
        run.state.segments[-1]["to_step"] = run.state.step
    with writing(run.out, run.state.step):
        save_torch(run.out / "ckpt.pt", capture(run))
        for name, df in run_tables(run.state).items():
            write_csv(run.out / name, df)
        write_json(run.out / "provenance.json", run_provenance(run))


@contextlib.contextmanager
def writing(out: Path, step: int):
    """A failed write (a full disk, a quota) ends the run with one line: every write is atomic
    (lnstab.io), so the last complete checkpoint and outputs are intact."""
    try:
        yield
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as RuntimeError
        cause = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise RunError(f"{out}: cannot write the run's files at step {step} ({cause}); "
                       "the last complete checkpoint is intact: free space and run the same command "
                       "to resume") from None


def restore(run, path: Path) -> None:
    """Resume ``run`` from ``path``; StaleCheckpoint if it holds another config or other data."""
    ck = read_checkpoint(path)
    # a key added to lnstab after the checkpoint was written trained it at its default
    written = {sec: {**d, **ck["config"].get(sec, {})} if isinstance(d, dict) else ck["config"].get(sec, d)
               for sec, d in RunConfig().to_dict().items()}
    if written != run.cfg.to_dict():
        diff = _diff_keys(written, run.cfg.to_dict())
        raise StaleCheckpoint(f"{path} was written with a different config ({', '.join(diff)})")
    if ck.get("data_fingerprint") != run.corpus.fingerprint:
        raise StaleCheckpoint(f"{path} was trained on other data (corpus fingerprint "
                              f"{ck.get('data_fingerprint')} -> {run.corpus.fingerprint})")
    run.model.load_state_dict(ck["model"])
    run.optimizer.load_state_dict(ck["optimizer"])
    run.train_gen.set_state(ck["train_gen"])
    torch.set_rng_state(ck["torch_rng"])
    if ck["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ck["cuda_rng"])
    set_numpy_rng_state(ck["numpy_rng"])
    random.setstate(ck["python_rng"])
    run.state = RunState(**{f.name: ck[f.name] for f in fields(RunState) if f.name in ck})
    run.resumed_from = run.state.step


def begin_segment(run, allow_other_code: bool) -> None:
    """Record that this process trains from the current step; resuming a run that other code
    trained (another version, or other package source: runfolder.code_digest) mixes two
    programs in one result, so it needs ``allow_other_code``."""
    st = run.state
    new = segment(st.step, run.device, run.group.world_size)
    if st.segments and not same_code(st.segments[-1], new) and not allow_other_code:
        old = st.segments[-1]
        raise RunError(f"{run.out}: steps {old['from_step']}-{old['to_step']} were trained by other code "
                       f"(lnstab {old['lnstab_version']}, source {old.get('code_sha256')}, commit "
                       f"{old['git_commit'][:12]}; this is {new['lnstab_version']}, source {new['code_sha256']}, "
                       f"commit {new['git_commit'][:12]}); resume with --allow-other-code to mix them (each "
                       "segment is recorded in provenance.json), or delete ckpt.pt to train again from step 0")
    st.segments.append(new)
    st.provenance = provenance(run.cfg, run.device, run.corpus, run.group.world_size)


def run_provenance(run) -> dict:
    """provenance.json: the run's provenance and every segment of it."""
    return {**run.state.provenance, "segments": run.state.segments}


def finish(run) -> dict:
    """summary.json, and one line saying how the run ended and whether it learned."""
    summary = run.state.summary or run.summary()
    if not run.group.main:
        return summary
    with writing(run.out, run.state.step):
        write_json(run.out / "summary.json", summary)
    run.log(f"{run.out.name}: {summary['status']} at step {run.state.step}, "
            f"val loss {summary['final_val_loss'] or float('nan'):.4f}, {summary['ms_per_step']:.1f} ms/step, "
            f"probe overhead {100 * summary['probe_overhead']:.1f}%, "
            f"{summary['model_tflops']:.3f} model TFLOP/s"
            + (f" (MFU {100 * summary['mfu']:.1f}%)" if summary["mfu"] else "") + ", "
            f"{summary['bound_violations']} bound violations")
    run.log(learned_line(run.out.name, summary["final_val_loss"], run.corpus.train, run.corpus.val,
                         run.cfg.model.vocab_size))
    return summary


def trained_model(folder, meta_path):
    """(config, model, corpus) of a run's final checkpoint, on the thread count the run trained
    with (the bytes of what is measured then do not follow the environment)."""
    import torch

    from .config import load_config
    from .data import load_corpus
    from .model import GPT
    from .runfolder import read_checkpoint

    meta = json.loads(Path(meta_path).read_text())
    ck = read_checkpoint(Path(folder) / "ckpt.pt")
    cfg = load_config(base=ck["config"])
    torch.set_num_threads(cfg.train.threads)
    model = GPT(cfg.model)
    model.load_state_dict(ck["model"])
    corpus = load_corpus(cfg.data, cfg.model.vocab_size, {"fingerprint": meta["fingerprint"],
                                                         "max_token": meta["max_token"]})
    return cfg, model, corpus
