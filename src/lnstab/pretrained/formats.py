"""The files a checkpoint's weights come from (the installed models' files: ``installed``):

- a ``save_pretrained`` folder: safetensors (one file or shards) or pytorch_model.bin;
- a GGUF file (llama.cpp's format): metadata, tokenizer and weights through transformers' own
  GGUF reader, dequantised to float32; each tensor's quantisation type is recorded.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch

from ..config import ConfigError

SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                      "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(path: Path):
    """(key, tensor) of a .safetensors file, each tensor read into memory of its own. Plain reads,
    not a memory map: a map's pages count as resident as they are read and one tensor kept would
    keep the whole file mapped, doubling the peak memory that inspect measures and checks."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        for key, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if h["dtype"] not in SAFETENSORS_DTYPES:
                raise ConfigError(f"{path.name}: {key} has dtype {h['dtype']}, not a weight type lnstab reads")
            t = torch.empty(h["shape"], dtype=SAFETENSORS_DTYPES[h["dtype"]])
            start, end = h["data_offsets"]
            if t.numel() * t.element_size() != end - start:
                raise ConfigError(f"{path.name}: {key} holds {end - start} bytes, not those of shape {h['shape']}")
            f.seek(8 + size + start)
            if t.numel() and f.readinto(t.view(-1).view(torch.uint8).numpy()) != end - start:
                raise ConfigError(f"{path.name}: ends inside {key} (a truncated file)")
            yield key, t


def weight_tensors(folder: Path):
    """(key, tensor) of every weight of a save_pretrained folder, read one tensor at a time:
    safetensors (one file or shards) or else pytorch_model.bin (memory-mapped)."""
    def shards(single: str, index: str) -> list[Path]:
        if (folder / index).is_file():
            return [folder / f for f in sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))]
        return [folder / single] if (folder / single).is_file() else []

    if files := shards("model.safetensors", "model.safetensors.index.json"):
        for f in files:
            yield from read_safetensors(f)
    elif files := shards("pytorch_model.bin", "pytorch_model.bin.index.json"):
        for f in files:
            yield from torch.load(f, map_location="cpu", mmap=True, weights_only=True).items()
    else:
        raise ConfigError(f"{folder}: no weights (model.safetensors or pytorch_model.bin)")



# -- GGUF ------------------------------------------------------------------------------------------
def gguf_quantisation(path: Path) -> dict[str, int]:
    """How many tensors of the GGUF file are stored in each type (F32, Q4_K, Q5_0, ...)."""
    from gguf import GGUFReader

    return dict(sorted(Counter(t.tensor_type.name for t in GGUFReader(str(path)).tensors).items()))


def load_gguf(path: Path, dtype: torch.dtype = torch.float32):
    """(transformers model in eval mode, its config) of a GGUF file: the config and the
    dequantised weights from transformers' GGUF reader, loaded into the model built from that
    config (``from_pretrained(gguf_file=...)`` would ask for accelerate, which nothing else needs)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    with no_init_weights():  # every weight is replaced: its memory is never written
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model, torch_dtype=dtype)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ConfigError(f"{path.name}: its tensors do not fill the model its metadata describes "
                          f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})")
    if tied:
        model.tie_weights()
    return model.eval(), config
