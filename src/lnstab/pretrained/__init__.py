"""Trained checkpoints measured with the package's probes and bounds (``lnstab inspect``).

One module per concern:

- ``gpt2``: GPT-2 in lnstab's own GPT (and back), where every probe and bound runs unchanged;
- ``formats``: the files weights come from (safetensors, pytorch_model.bin, GGUF) and the trained
  models installed packages carry (``INSTALLED``: SmolLM2, Gemma 3, MiniLM), pinned by sha256;
- ``hooked``: the other families, their placement, and their stream read through forward hooks;
- ``stream``: what the paper is about on a real stream (moments, robust statistics, massive
  activations, adjoints, depth statistics in the claims' vocabulary, norm gains);
- ``bounds``: docs/bounds.md's bounds on a real model's stream, from its own weights;
- ``inspection``: the command (``inspect``); ``roundtrip``: a study run exported and inspected; ``tables``: the
  study's tables of its inspections.
"""
from .formats import INSTALLED, installed_path
from .gpt2 import from_gpt2, gpt2_from_tensors, to_gpt2
from .hooked import FAMILIES, Family, family, probe_hooked
from .inspection import (RUNTIME_BYTES, available_bytes, bytes_needed, default_text, inspect, inspect_models,
                      inspection_names, load_checkpoint, resolve_model, tokens_for)
from .roundtrip import compare_final, inspect_run
from .tables import inspection_tables, write_inspection_tables

__all__ = ["FAMILIES", "INSTALLED", "RUNTIME_BYTES", "Family", "available_bytes", "bytes_needed", "compare_final",
           "default_text", "family", "from_gpt2", "gpt2_from_tensors", "inspect", "inspect_models", "inspect_run",
           "inspection_names", "inspection_tables", "installed_path", "load_checkpoint", "probe_hooked",
           "resolve_model", "to_gpt2", "tokens_for", "write_inspection_tables"]
