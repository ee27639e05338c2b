"""Trained checkpoints measured with the package's probes and bounds (``lnstab inspect``).

One module per concern:

- ``gpt2``: GPT-2 in lnstab's own GPT (and back), where every probe and bound runs unchanged;
- ``installed``: the trained models installed packages carry (``INSTALLED``: SmolLM2, Gemma 3,
  MiniLM), pinned by sha256, and what an inspection writes where (torch-free);
- ``formats``: the files weights come from (safetensors, pytorch_model.bin, GGUF);
- ``hooked``: the other families, their placement, and their stream read through forward hooks;
- ``stream``: what the paper is about on a real stream (moments, robust statistics, massive
  activations, adjoints, depth statistics in the claims' vocabulary, norm gains);
- ``bounds``: docs/bounds.md's bounds on a real model's stream, from its own weights;
- ``inspection``: the command (``inspect``); ``roundtrip``: a study run exported and inspected; ``tables``: the
  study's tables of its inspections.
"""
import importlib

# what the package exports, and the module that holds it: imported on first use, so that the
# workflow's parse of the Snakefile (every job's) reads ``installed`` without importing torch
EXPORTS = {
    "INSTALLED": "installed", "installed_path": "installed", "inspection_names": "installed",
    "from_gpt2": "gpt2", "gpt2_from_tensors": "gpt2", "to_gpt2": "gpt2",
    "FAMILIES": "hooked", "Family": "hooked", "family": "hooked", "probe_hooked": "hooked",
    "RUNTIME_BYTES": "inspection", "available_bytes": "inspection", "bytes_needed": "inspection",
    "default_text": "inspection", "inspect": "inspection", "inspect_models": "inspection",
    "load_checkpoint": "inspection", "resolve_model": "inspection", "tokens_for": "inspection",
    "compare_final": "roundtrip", "inspect_run": "roundtrip",
    "inspection_tables": "tables", "write_inspection_tables": "tables",
}
__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{EXPORTS[name]}", __name__), name)
