"""The workflow's steps as plain functions: each Snakemake script is a thin call to one of these,
and each can be run by hand on the files of a finished (or half-finished) study."""
from __future__ import annotations

import errno
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .baselines import cross_entropies
from .claims import claims_table, demonstrations_table, reference_table, software_checks_table
from .stats import dt_ablation_table
from .config import ConfigError, DataConfig, load_config, read_yaml
from .grid import expand, run_config
from .io import read_table, write_bytes, write_json, write_text
from .collect import collect
from .lineage import RECORDS, sha256
from .lineage import record as record_lineage
from .figures import make_figure
from .tables import COLLECTED, data_file, write_table


# what a full disk, a quota or a read-only or foreign folder raises: the job's log says it in one line
ONE_LINE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _one_line_os_error(kind, value, tb) -> None:
    if isinstance(value, OSError) and value.errno in ONE_LINE_ERRNOS:
        where = f"{value.filename}: " if value.filename else ""
        print(f"lnstab: {where}{value.strerror}; every output is written atomically, so nothing half-written "
              "is left: free space (or fix the permission) and run the same command", file=sys.stderr, flush=True)
    else:
        sys.__excepthook__(kind, value, tb)


def redirect_output(log_path: str | Path) -> None:
    """Send this process's stdout and stderr to a log file (Snakemake's ``log:``); a full disk or
    a refused write ends the job with one line there instead of a traceback."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(log_path, "w", buffering=1)
    sys.stdout = sys.stderr = stream
    sys.excepthook = _one_line_os_error


def over(cfg: dict, defaults: dict) -> dict:
    """``cfg`` over ``defaults``: mappings merged key by key, anything else replaced (what
    Snakemake does with a --configfile over the Snakefile's config/config.yaml)."""
    out = dict(defaults)
    for k, v in cfg.items():
        out[k] = over(v, out[k]) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_study(config_path: str | Path) -> tuple[dict, dict]:
    """(workflow config, {run_id: grid params}) from a workflow YAML such as config/extended.yaml,
    over the config.yaml beside it as the workflow reads it (``snakemake --configfile``)."""
    path = Path(config_path)
    cfg = read_yaml(path.read_text(), str(path))
    default = path.with_name("config.yaml")
    if default.exists() and default.resolve() != path.resolve():
        cfg = over(cfg, read_yaml(default.read_text(), str(default)))
    return cfg, expand(cfg["sweeps"], cfg.get("base", {}))


def check_folder_names(config: dict) -> None:
    """The study's output folders (results, figures) are names the file system can hold: a
    ConfigError naming the key, before anything is read or written there."""
    for key in ("results", "figures"):
        value = str(config.get(key) or "")
        limit = os.pathconf("." if not os.path.isabs(value) else "/", "PC_NAME_MAX")
        for part in Path(value).parts:
            if len(os.fsencode(part)) > limit:
                raise ConfigError(f"{key}: the folder name {part[:20]}... ({len(os.fsencode(part))} bytes) is "
                                  f"longer than this file system allows ({limit})")


def record_sources(data: dict, path: str | Path) -> Path:
    """Write ``path`` (the corpus stage's input) with the sha256 of every source file of the
    corpus, only when a digest changed: the workflow then reruns the corpus stage, and through
    meta.json every training, on a change of content and never on a change of time alone. Hashes
    are cached beside it (.sources_stat.json), so a file is read again only once it changed."""
    from .data import source_files, source_digests

    path = Path(path)
    cache_path = path.parent / ".sources_stat.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    files = source_files(data)  # a missing package or pattern: ConfigError, nothing written
    missing = [str(f) for f in files if not f.is_file()]
    if missing:  # stopped at parse, before sources.json (and through it every run) is rewritten
        key = "data.paths" if data.get("source") == "text" else "data.dir"
        raise ConfigError(f"{key}: no such corpus file: {', '.join(missing[:3])}"
                          + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""))
    record = {"source": data.get("source", "shakespeare"), "files": source_digests(files, cache)}
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
    # the parse made it, not a job: its own lineage record, so that the corpus job's input is vouched for
    lineage_record = path.parent.parent / RECORDS / "sources.json"
    if not lineage_record.exists() or json.loads(lineage_record.read_text()).get("outputs") != {str(path): sha256(path)}:
        record_lineage(path.parent.parent, "sources", [], [path])
    cache_text = json.dumps(cache, sort_keys=True)
    if not cache_path.exists() or cache_path.read_text() != cache_text:
        write_text(cache_path, cache_text)
    return path


def prepare_corpus(data: dict, folder: str | Path, meta_path: str | Path, baselines_stem: str | Path,
                   vocab_size: int | None = None) -> dict:
    """Tokenize the corpus once for every run: uint16 train.bin / val.bin in ``folder`` (the
    format of nanoGPT's prepare scripts), or, for a corpus that is already .bin, a pointer to it.
    Also writes the corpus's unigram and bigram cross-entropies (lnstab.baselines)."""
    from .data import file_digest, load_corpus

    cfg = load_config(base={"data": data}).data if data.get("source") != "bin" else DataConfig(**data)
    folder = Path(folder)
    if cfg.source == "bin":  # checked once here; the training jobs read the result from meta.json
        from .data import bin_files

        files = bin_files(Path(cfg.dir))
        corpus = load_corpus(cfg, vocab_size)  # every token below model.vocab_size
        meta = {"dir": str(Path(cfg.dir).resolve()), "vocab_size": None, "source": "bin",
                "fingerprint": file_digest(files), "max_token": int(corpus.vocab_size - 1),
                "train_tokens": int(len(corpus.train)), "val_tokens": int(len(corpus.val))}
    elif cfg.tokenizer == "gpt2":  # streamed: corpora of many GB never sit in memory
        from .data import GPT2_VOCAB, Corpus, shakespeare_files, text_files, write_gpt2_bins

        texts = shakespeare_files() if cfg.source == "shakespeare" else text_files(cfg.paths)
        print(f"tokenizing {len(texts)} file(s) with GPT-2's BPE into {folder}", flush=True)
        files, n = write_gpt2_bins(texts, folder, cfg.val_fraction)
        train, val = (np.memmap(f, dtype=np.uint16, mode="r") for f in files)
        corpus = Corpus(train, val, GPT2_VOCAB, None, file_digest(files))
        meta = {"dir": str(folder), "vocab_size": GPT2_VOCAB, "source": cfg.source, "tokenizer": "gpt2",
                "fingerprint": corpus.fingerprint, "max_token": int(max(train.max(), val.max())),
                "train_tokens": int(len(train)), "val_tokens": int(len(val)), "documents": len(texts)}
    else:
        corpus = load_corpus(cfg)
        if corpus.vocab_size > np.iinfo(np.uint16).max:
            raise ValueError(f"vocabulary of {corpus.vocab_size} does not fit uint16 tokens")
        folder.mkdir(parents=True, exist_ok=True)
        files = [folder / f"{split}.bin" for split in ("train", "val")]
        for split, f in zip(("train", "val"), files):
            write_bytes(f, getattr(corpus, split).astype(np.uint16).tobytes())
        meta = {"dir": str(folder), "vocab_size": corpus.vocab_size, "source": cfg.source,
                "tokenizer": cfg.tokenizer, "fingerprint": file_digest(files),
                "max_token": int(max(corpus.train.max(), corpus.val.max())),
                "train_tokens": int(len(corpus.train)), "val_tokens": int(len(corpus.val))}
    print(f"corpus {cfg.source}: {meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens, "
          f"largest token id {meta['max_token']}, fingerprint {meta['fingerprint']}")
    base = cross_entropies(corpus.train, corpus.val, corpus.vocab_size)
    print(f"baselines (nats/token): unigram {base['unigram_nats']:.4f}, bigram {base['bigram_nats']:.4f}")
    write_table(pd.DataFrame([{"corpus": cfg.source, "tokenizer": cfg.tokenizer, "tokens": int(len(corpus.val)),
                               "train_tokens": int(len(corpus.train)), "vocab_size": corpus.vocab_size, **base}]),
                baselines_stem)
    write_json(meta_path, meta)
    return meta


def train_grid_point(params: dict, base: dict, meta_path: str | Path, folder: str | Path, processes: int = 1,
                     watch=()) -> dict:
    """Train one grid point on the prepared corpus (resuming from its checkpoint if present; a
    checkpoint of another config or other data is moved aside and the run trained again).
    With ``processes`` > 1 the run is trained by that many ranks on this node (lnstab.launch);
    ``watch``: the study's live views (lnstab.watch)."""
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        return _ranks_grid_point(params, base, meta_path, folder, processes, watch)
    from .train import train

    meta = json.loads(Path(meta_path).read_text())
    cfg = run_config(params, base, _corpus_settings(meta))
    known = {"fingerprint": meta["fingerprint"], "max_token": meta["max_token"]}
    summary = train(cfg, folder, restart_stale=True, corpus_meta=known, grid=params, watch=watch)
    if summary["status"] not in ("completed", "diverged"):
        raise RuntimeError(f"run {folder} ended with status {summary['status']}")
    return summary


def study_groups(config: dict, runs: dict[str, dict], processes: int = 1) -> dict[str, list[str]]:
    """The study's training jobs: group name -> its runs (lnstab.groups.plan_groups, at most
    groups.max_runs each); one run per job where a job has several processes."""
    from .groups import group_size, plan_groups

    base = config.get("base", {})
    return plan_groups({name: run_config(params, base) for name, params in runs.items()},
                       group_size(config, processes))


def train_grid_points(name: str, grids: list[dict], base: dict, meta_path: str | Path, folders: list,
                      processes: int = 1, watch=(), wasserstein: bool = False) -> list[dict]:
    """Train a study's training group: its grid points as one stacked model (lnstab.groups), each
    resuming from its own checkpoint (a checkpoint of another config or other data is moved aside
    and that run trained again); a single grid point on ``processes`` > 1 ranks trains alone. With
    ``wasserstein``, then each run's Wasserstein sensitivity (``run_wasserstein``) in this process."""
    if processes > 1:
        summaries = [train_grid_point(g, base, meta_path, f, processes, watch) for g, f in zip(grids, folders)]
    else:
        from .groups import train_group

        meta = json.loads(Path(meta_path).read_text())
        known = {"fingerprint": meta["fingerprint"], "max_token": meta["max_token"]}
        cfgs = [run_config(g, base, _corpus_settings(meta)) for g in grids]
        print(f"training group {name}: {len(grids)} run(s)", flush=True)
        summaries = train_group(cfgs, folders, name, restart_stale=True, corpus_meta=known, grids=grids,
                                watch=watch)
    for folder, summary in zip(folders, summaries):
        if summary["status"] not in ("completed", "diverged"):
            raise RuntimeError(f"run {folder} ended with status {summary['status']}")
    if wasserstein:
        for folder in folders:
            run_wasserstein(folder, meta_path, Path(folder) / "wasserstein.csv")
    return summaries


def _corpus_settings(meta: dict) -> dict:
    """The prepared corpus as run config values (values as data, never re-parsed strings)."""
    data = {"data": {"source": "bin", "dir": meta["dir"]}}
    if meta["vocab_size"] is not None:
        data["model"] = {"vocab_size": meta["vocab_size"]}
    return data


def _fd(stream):
    """The file descriptor behind ``stream`` (a job's log), or None: inherit this process's."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _ranks_grid_point(params: dict, base: dict, meta_path, folder, processes: int, watch=()) -> dict:
    """The same call on ``processes`` ranks, started by lnstab.launch with the arguments as one
    JSON document; a stop signal ends the job with PREEMPTED_EXIT (raised as Preempted), so that
    a retry resumes, after every rank has finished its step and the checkpoint is written."""
    from .launch import PREEMPTED_EXIT, launch
    from .train import Preempted

    job = json.dumps({"params": params, "base": base, "meta_path": str(meta_path), "folder": str(folder),
                      "watch": list(watch)})
    print(f"training {folder} on {processes} processes (torch.distributed, lnstab.launch)", flush=True)
    code = launch(["lnstab.study", job], processes, dict(os.environ), _fd(sys.stdout), _fd(sys.stderr))
    if code == PREEMPTED_EXIT:
        raise Preempted(f"{folder}: stopped by a signal; the checkpoint holds the step reached")
    if code != 0:
        raise RuntimeError(f"training of {folder} on {processes} processes exited with status {code}")
    return json.loads((Path(folder) / "summary.json").read_text())


def collect_tables(run_dirs: dict, runs: dict, baselines_csv, tables_dir: str | Path) -> dict[str, pd.DataFrame]:
    tables = collect(run_dirs, runs, read_table(baselines_csv))
    tables_dir = Path(tables_dir)
    for name in COLLECTED:
        write_table(tables[name], tables_dir / name)
    r = tables["runs"]
    print(f"collected {len(r)} runs ({int(r['learned'].sum())} learned): "
          + ", ".join(f"{k} {len(v)} rows" for k, v in tables.items()))
    return tables


def run_screen(config, overrides: list[str], block: str | None, out, tables_dir=None, figure_stem=None, lrs=None):
    """``lnstab screen``: the screen's tables (and figure) from a run config (a YAML path, or a
    dict as the workflow's ``screen.base``). Tables go to ``tables_dir`` (default ``out``), the
    figure to ``figure_stem`` (default out/screen; None from the workflow, whose figure rule
    draws it), the trained models to out/runs/."""
    from .screen import SCREEN_LRS, screen, screen_config

    if isinstance(config, dict):
        import yaml

        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / "screen_config.yaml"
        write_text(path, yaml.safe_dump(config, sort_keys=True))
        config = path
    cfg = screen_config(config, overrides)
    tables = screen(cfg, out, block, lrs=tuple(lrs) if lrs else SCREEN_LRS)
    tables_dir = Path(tables_dir or out)
    for name, df in tables.items():
        write_table(df, tables_dir / f"screen_{name}")
    if figure_stem is not False:
        from .figures import figure_screen, save

        save(figure_screen(tables["sublayers"], tables["verdicts"]), figure_stem or Path(out) / "screen")
    return tables["verdicts"]


def run_wasserstein(folder, meta_path, out_csv, sequences: int = 16) -> pd.DataFrame:
    """The Wasserstein sensitivity of one run's final model (lnstab.wasserstein): ``sequences``
    validation sequences against noise-perturbed copies and against as many sequences of the
    training split (another slice of the corpus), with the flow Jacobian's gains; one row per
    second distribution, written to ``out_csv`` (no rows for a diverged run: no finite flow)."""
    import torch

    from .checkpoint import trained_model
    from .data import get_batch
    from .grid import ID_DEFAULTS
    from .io import write_csv
    from .tables import FLOAT_FORMAT, PARAMS
    from .wasserstein import WASSERSTEIN_COLUMNS, flow_gains, sensitivity_rows

    folder = Path(folder)
    s = json.loads((folder / "summary.json").read_text())
    params = {**ID_DEFAULTS, **s["grid"]}
    rows = []
    if s["status"] == "completed":
        cfg, model, corpus = trained_model(folder, meta_path)
        gen = torch.Generator().manual_seed(cfg.seed)
        idx, _ = get_batch(corpus.val, sequences, cfg.model.block_size, gen)
        other, _ = get_batch(corpus.train, sequences, cfg.model.block_size, gen)
        gains = flow_gains(model, idx)
        rows = [{**{k: params[k] for k in PARAMS}, **row, **gains} for row in sensitivity_rows(model, idx, other)]
        print(f"{folder.name}: ratios " + ", ".join(f"{r['perturbation']} {r['ratio']:.3g}" for r in rows)
              + f"; flow Jacobian gain rms {gains['rms_gain']:.3g}, worst direction {gains['worst_gain']:.3g}",
              flush=True)
    df = pd.DataFrame(rows, columns=PARAMS + list(WASSERSTEIN_COLUMNS))
    write_csv(out_csv, df, float_format=FLOAT_FORMAT)
    return df


def wasserstein_table(per_run_csvs, runs_csv, out_stem) -> pd.DataFrame:
    """Every run's Wasserstein rows (``run_wasserstein``) in one table, with each run's role and
    whether it learned (from runs.csv)."""
    from .tables import PARAMS

    runs = read_table(runs_csv)
    parts = [df for df in (read_table(p) for p in sorted(map(str, per_run_csvs))) if len(df)]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PARAMS)
    real = {k: float for k in ("dt", "weight_decay", "lr", "init_scale")}  # "1" reads back as an integer
    table = table.astype(real).merge(runs[PARAMS + ["role", "learned"]].astype(real), on=PARAMS, how="left")
    cols = PARAMS + ["role", "learned"] + [c for c in table.columns if c not in PARAMS + ["role", "learned"]]
    table = table[cols].assign(learned=lambda t: t["learned"].astype(bool))
    table = table.sort_values(PARAMS + ["perturbation"]).reset_index(drop=True)
    write_table(table, out_stem)
    return table


def make_claims_table(runs_csv, tables_dir, scale_csv=None) -> pd.DataFrame:
    """claims, claims_reference, demonstrations, software_checks and dt_ablation
    (lnstab.tables.JUDGED) from runs.csv and scale.csv (default: next to runs.csv)."""
    runs = read_table(runs_csv)
    scale_csv = Path(scale_csv or Path(runs_csv).with_name("scale.csv"))
    if scale_csv.exists():
        scale = read_table(scale_csv)
    else:  # a study committed before scale.csv was: its verdicts, but none by reference step
        print(f"{scale_csv}: not found; claims measured from a reference step are judged from the end of warmup only")
        scale = None
    claims = claims_table(runs, scale)
    tables = {"claims": claims,
              "claims_reference": reference_table(runs, scale),
              "demonstrations": demonstrations_table(runs), "software_checks": software_checks_table(runs),
              "dt_ablation": dt_ablation_table(runs)}
    for name, df in tables.items():
        write_table(df, Path(tables_dir) / name)
    for _, c in claims.iterrows():
        where = "" if c["condition"] == "all" else f" [{c['condition']}]"
        print(f"{c['claim']}{where}: {c['verdict']} effect {c['effect']:.3g} [{c['ci_low']:.3g}, {c['ci_high']:.3g}] "
              f"over {c['seeds']} seed(s), {c['holds']}/{c['checked']}; {c['numbers']}")
    d = tables["demonstrations"]
    print(f"demonstrations: {int(d['demonstrated'].sum())}/{len(d)} showed what they were declared to")
    return claims


# committed studies whose claims a summary cites where its own study does not decide them
CITED_STUDIES = ("results/tuning", "results/extended")
SUMMARY_TABLES = ("baselines", "runs", "losses", "claims", "demonstrations", "software_checks", "dt_ablation",
                  "tightness", "screen_verdicts", "wasserstein", "inspected_models", "inspected_real",
                  "inspected_quantisation")


def roundtrip_run(values: dict | None, runs: dict[str, dict], base: dict) -> str | None:
    """The run id that ``inspect.roundtrip`` picks: exactly one run of the grid, a GPT-2 in
    lnstab's terms (Pre-LN, LayerNorm with biases, dt 1, dt not folded); None without a round trip,
    or, with a note, where the values pick no run of this grid."""
    from .grid import GRID_KEYS, ID_DEFAULTS, run_config

    if not values:
        return None
    unknown = sorted(set(values) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"inspect.roundtrip: {', '.join(unknown)} not grid keys ({', '.join(GRID_KEYS)})")
    values = {**ID_DEFAULTS, **values}  # the default last maps unless the values say otherwise
    match = [r for r, p in runs.items() if all({**ID_DEFAULTS, **p}.get(k) == v for k, v in values.items())]
    if not match:  # e.g. the default study's values inherited by a study of another grid: a note, not a stop
        print(f"inspect.roundtrip: {values} picks no run of this study's grid, so it has no round trip through "
              "transformers' GPT-2 (give values that pick one Pre-LN run at dt 1 to have it)", file=sys.stderr)
        return None
    if len(match) != 1:
        raise ConfigError(f"inspect.roundtrip: {values} picks {len(match)} runs of the grid"
                          + (f" ({', '.join(match[:4])}...)" if match else "") + "; give values that pick one, "
                          "or 'inspect: {roundtrip: null}' for none (a --configfile inherits config/config.yaml's)")
    m = run_config(runs[match[0]], base).model
    if (m.placement, m.norm, m.dt, m.bias, m.fold_dt) != ("pre", "layernorm", 1.0, True, False):
        raise ConfigError(f"inspect.roundtrip: run {match[0]} is not a GPT-2 (placement {m.placement}, norm "
                          f"{m.norm}, dt {m.dt}, bias {m.bias}): pick a Pre-LN run with LayerNorm at dt 1")
    return match[0]


def left_out(config: dict) -> tuple[str, ...]:
    """The tables and figures a study does not make: the screen's and the Wasserstein stage's
    where disabled, the inspections' where it inspects nothing (no models, no round trip)."""
    out = ()
    if not config.get("screen", {}).get("enabled", True):
        out += ("screen_verdicts", "screen_sublayers", "fig7_screen")
    if not config.get("wasserstein", {}).get("enabled", True):
        out += ("wasserstein", "fig8_wasserstein")
    from .tables import INSPECTION_TABLES

    inspect = config.get("inspect", {})
    if not inspect.get("models") and not inspect.get("roundtrip"):
        out += (*INSPECTION_TABLES, "fig9_inspect")
    if not inspect.get("models"):
        out += ("fig10_real_models",)
    return out


def redraw(config_path: str | Path = "config/config.yaml", into: str | Path | None = None,
           verbose: bool = True) -> list[Path]:
    """Every figure and the summary of a study from its tables alone, without Snakemake and without
    a training job (``lnstab figures``, ``make figures``): the same function and inputs as the
    workflow's figure and summary rules, so the files equal the workflow's byte for byte. With
    ``into``, they go to into/figures/ and into/results/summary.md instead (to compare them)."""
    from .figures import FIGURES

    config, _ = load_study(config_path)
    results, figdir = str(config.get("results", "results")).rstrip("/"), config.get("figures", "figures")
    tables_dir = Path(results) / "tables"
    summary_path = Path(results) / "summary.md"
    if into is not None:
        figdir, summary_path = Path(into) / "figures", Path(into) / "results" / "summary.md"
    skipped = left_out(config)
    needed = sorted({t for name, (_, ts) in FIGURES.items() if name not in skipped for t in ts}
                    | {n for n in SUMMARY_TABLES if n not in skipped})
    missing = [str(tables_dir / data_file(t)) for t in needed if not (tables_dir / data_file(t)).exists()]
    if missing:
        raise FileNotFoundError(f"{config_path}: tables missing (run the workflow first): {', '.join(missing)}")
    paths = []
    for name, (_, inputs) in FIGURES.items():
        if name in skipped:
            continue
        t0 = time.perf_counter()
        paths += make_figure(name, {t: tables_dir / data_file(t) for t in inputs}, Path(figdir) / name,
                             config.get("figure_style"))
        if verbose:
            print(f"{figdir}/{name}.png, .pdf ({time.perf_counter() - t0:.1f} s)", flush=True)
    try:
        write_summary(tables_dir, figdir, config, summary_path)
    except KeyError as e:  # a table without a column the summary reports
        raise ValueError(f"the summary: a column of the tables in {tables_dir} is missing: {e}; rebuild them") from None
    return paths + [summary_path, summary_path.with_suffix(".html")]


def write_summary(tables_dir, figdir, config: dict, out) -> None:
    """results/summary.md: the study on one page (lnstab.summary), and next to it summary.html,
    the same page for the report."""
    from .summary import summary_html, summary_markdown

    tables = {n: read_table(Path(tables_dir) / data_file(n)) for n in SUMMARY_TABLES if n not in left_out(config)}
    others = {f"{d}/summary.md": read_table(Path(d) / "tables" / "claims.csv") for d in CITED_STUDIES
              if (Path(d) / "tables" / "claims.csv").exists() and Path(d).resolve() != Path(out).parent.resolve()}
    text = summary_markdown(tables, config, os.path.relpath(figdir, Path(out).parent), others)
    write_text(out, text)
    write_text(Path(out).with_suffix(".html"), summary_html(text))


def write_manifest(files, out) -> None:
    """sha256 of every table and figure, sorted by path (``sha256sum -c`` can read it), written
    only if the study's lineage holds: every file is what the job that made it recorded, and that
    record exists (a removed lineage folder certifies nothing). The manifest job records itself, so
    that an edited manifest (a line removed, a digest changed) is named by check_manifest."""
    from .lineage import LineageError, check_chain, edited, load_records, record, unrecorded

    results = Path(out).parent
    records = {job: r for job, r in load_records(results).items() if job != "manifest"}  # the one replaced here
    files = sorted(map(str, files))
    problems = check_chain(records) + edited(files, records) + unrecorded(files, records, results)
    if problems:
        raise LineageError("not certified, files differ from what made them or no record says what made "
                           "them:\n  " + "\n  ".join(dict.fromkeys(problems)))
    lines = [f"{sha256(f)}  {f}" for f in files]
    write_text(out, "\n".join(lines) + "\n")
    record(results, "manifest", files, [out])


def check_manifest(manifest) -> list[str]:
    """One message per file whose content differs from the manifest, or from what the job that
    made it recorded (the study's lineage, where it is present), and per difference between the
    manifest and what the manifest job recorded writing (a line removed or changed); empty: all
    as certified. Files that are not here are not failures (absent_from_manifest lists them: a
    clone lacks the tables that are not committed); ``uncertified`` says what a check without the
    lineage records cannot tell.
    ValueError for a manifest that is missing, empty or not in sha256sum's format."""
    from .lineage import check_chain, load_records

    path = Path(manifest)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ValueError(f"{manifest}: cannot read the manifest ({e.strerror})") from None
    entries = []
    for n, line in enumerate(lines, 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not name:
            raise ValueError(f"{manifest}:{n}: not a line of sha256sum's format (<64 hex digits>  <path>)")
        entries.append((digest, name))
    if not entries:
        raise ValueError(f"{manifest}: lists no files, so it certifies nothing")
    bad = [f"{name}: differs from the manifest" for digest, name in entries
           if _regular(name) and sha256(name) != digest]
    bad += [f"{name}: listed in the manifest but not a regular file" for _, name in entries
            if Path(name).exists() and not _regular(name)]
    records = load_records(path.parent)
    own = records.get("manifest")
    if own is not None:
        listed = {name for _, name in entries}
        bad += [f"{p}: the manifest job certified it, but the manifest no longer lists it"
                for p in own["inputs"] if p not in listed]
    return bad + check_chain(records, missing_ok=True)


def uncertified(manifest) -> str:
    """Why a check of this manifest is by hashes only, or '' where the lineage records are here."""
    from .lineage import RECORDS, load_records

    folder = Path(manifest).parent
    records = load_records(folder)
    if not records:
        return (f"no lineage records ({folder / RECORDS}; a clone has none): the listed files match the "
                "manifest's hashes, but whether the manifest or a table was edited before it was written cannot "
                "be told here")
    if "manifest" not in records:
        return "the lineage holds no record of the manifest job (written by an older lnstab): rerun it"
    return ""


def _regular(name: str) -> bool:
    """A regular file, not through a link and never opening a FIFO (sha256 would wait on it)."""
    import stat

    try:
        return stat.S_ISREG(os.lstat(name).st_mode)
    except OSError:
        return False


def absent_from_manifest(manifest) -> list[str]:
    """The files a manifest lists that are not here (in a clone: the tables not committed)."""
    return [line.partition("  ")[2] for line in Path(manifest).read_text().splitlines()
            if not Path(line.partition("  ")[2]).exists()]


if __name__ == "__main__":  # one rank of _ranks_grid_point
    from .cli import run_rank
    from .launch import note_stop_signals

    note_stop_signals()
    sys.exit(run_rank(lambda: train_grid_point(**json.loads(sys.argv[1]))))
