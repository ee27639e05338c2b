"""The workflow's steps as plain functions: each Snakemake script is a thin call to one of these,
and each can be run by hand on the files of a finished (or half-finished) study."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .config import DataConfig, load_config
from .data import load_corpus
from .grid import expand, run_config
from .io import write_json, write_text
from .tables import claims_table, collect, growth_table, write_table


def redirect_output(log_path: str | Path) -> None:
    """Send this process's stdout and stderr to a log file (Snakemake's ``log:``)."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(log_path, "w", buffering=1)
    sys.stdout = sys.stderr = stream


def load_study(config_path: str | Path) -> tuple[dict, dict]:
    """(workflow config, {run_id: grid params}) from a workflow YAML such as config/config.yaml."""
    cfg = yaml.safe_load(Path(config_path).read_text())
    return cfg, expand(cfg["sweeps"], cfg.get("base", {}))


def prepare_corpus(data: dict, folder: str | Path, meta_path: str | Path) -> dict:
    """Tokenize the corpus once for every run: uint16 train.bin / val.bin in ``folder`` (the
    format of nanoGPT's prepare scripts), or, for a corpus that is already .bin, a pointer to it."""
    cfg = load_config(base={"data": data}).data if data.get("source") != "bin" else DataConfig(**data)
    folder = Path(folder)
    if cfg.source == "bin":
        meta = {"dir": str(Path(cfg.dir).resolve()), "vocab_size": None, "source": "bin"}
    else:
        corpus = load_corpus(cfg)
        if corpus.vocab_size > np.iinfo(np.uint16).max:
            raise ValueError(f"vocabulary of {corpus.vocab_size} does not fit uint16 tokens")
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            getattr(corpus, split).astype(np.uint16).tofile(folder / f"{split}.bin")
        meta = {"dir": str(folder), "vocab_size": corpus.vocab_size, "source": cfg.source,
                "tokenizer": cfg.tokenizer, "fingerprint": corpus.fingerprint,
                "train_tokens": int(len(corpus.train)), "val_tokens": int(len(corpus.val))}
        print(f"corpus {cfg.source}: {meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens, "
              f"vocab {corpus.vocab_size}")
    write_json(meta_path, meta)
    return meta


def train_grid_point(params: dict, base: dict, meta_path: str | Path, folder: str | Path) -> dict:
    """Train one grid point on the prepared corpus (resuming from its checkpoint if present)."""
    from .train import train

    meta = json.loads(Path(meta_path).read_text())
    sets = ["data.source=bin", f"data.dir={meta['dir']}"]
    if meta["vocab_size"] is not None:
        sets.append(f"model.vocab_size={meta['vocab_size']}")
    cfg = run_config(params, base, sets)
    summary = train(cfg, folder)
    if summary["status"] not in ("completed", "diverged"):
        raise RuntimeError(f"run {folder} ended with status {summary['status']}")
    return summary


def collect_tables(run_dirs: dict, runs: dict, tables_dir: str | Path) -> dict[str, pd.DataFrame]:
    tables = collect(run_dirs, runs)
    tables_dir = Path(tables_dir)
    for name, df in tables.items():
        formats = ("csv", "md", "tex") if name == "runs" else ("csv",)
        write_table(df, tables_dir / name, formats)
    print(f"collected {len(runs)} runs: " + ", ".join(f"{k} {len(v)} rows" for k, v in tables.items()))
    return tables


def read_table(path) -> pd.DataFrame:
    return pd.read_csv(path)


def make_growth_table(probes_csv, out_stem) -> pd.DataFrame:
    growth = growth_table(read_table(probes_csv))
    write_table(growth, out_stem)
    return growth


def make_claims_table(runs_csv, probes_csv, growth_csv, out_stem) -> pd.DataFrame:
    claims = claims_table(read_table(runs_csv), read_table(probes_csv), read_table(growth_csv))
    write_table(claims, out_stem)
    for _, c in claims.iterrows():
        print(f"{c['claim']}: {c['verdict']} ({c['holds']}/{c['checked']})")
    return claims


def make_figure(name: str, tables: dict[str, str | Path], out_stem) -> list[Path]:
    from .figures import FIGURES, save

    fn = FIGURES[name]
    args = [read_table(tables[a]) for a in inspect.signature(fn).parameters]  # tables by name
    return save(fn(*args), out_stem)


def write_report(claims_csv, runs_csv, growth_csv, figdir, out) -> None:
    """A short written report: claims with verdicts, the runs, the selected growth laws, figures."""
    claims, runs, growth = (read_table(p) for p in (claims_csv, runs_csv, growth_csv))
    sel = growth[(growth["axis"] == "layer") & growth["selected"]]
    laws = sel.groupby(["placement", "quantity", "law"]).size().unstack(fill_value=0)
    status = runs.groupby(["placement", "status"]).size().unstack(fill_value=0)
    parts = [
        "# lnstab study report",
        "",
        f"{len(runs)} runs; {int(runs['violations'].sum())} bound violations in "
        f"{int(runs['bound_checks'].sum())} checks.",
        "",
        "## Claims",
        "",
        claims[["claim", "verdict", "holds", "checked", "criterion"]].to_markdown(index=False),
        "",
        "## Runs by placement and status",
        "",
        status.to_markdown(),
        "",
        "## Growth law selected over the layer index (number of runs)",
        "",
        laws.to_markdown(),
        "",
        "## Figures",
        "",
    ]
    from .figures import FIGURES

    for name, fn in FIGURES.items():
        rel = os.path.relpath(Path(figdir) / f"{name}.png", Path(out).parent)
        parts.append(f"- [{name}]({rel}): {fn.__doc__.strip().splitlines()[0]}")
    write_text(out, "\n".join(parts) + "\n")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest(files, out) -> None:
    """sha256 of every table and figure, sorted by path (``sha256sum -c`` can read it)."""
    lines = [f"{sha256(f)}  {f}" for f in sorted(map(str, files))]
    write_text(out, "\n".join(lines) + "\n")


def check_manifest(manifest) -> list[str]:
    """Paths whose content differs from the manifest (empty: byte-identical)."""
    bad = []
    for line in Path(manifest).read_text().splitlines():
        digest, path = line.split("  ", 1)
        if not Path(path).exists() or sha256(path) != digest:
            bad.append(path)
    return bad
