"""The round trip: a trained Pre-LN run of the study, exported to transformers' GPT-2 and
inspected on its own probe batch; its rows must equal the run's final probe."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import ConfigError
from ..io import write_json
from .gpt2 import to_gpt2
from .inspection import inspect


def inspect_run(run_folder: str | Path, meta_path: str | Path, out: str | Path) -> dict:
    """Export a trained Pre-LN run's final model to transformers' format (save_pretrained), inspect
    the export on the run's own probe batch with the run's probe settings, and compare every row
    with the run's final probe: the inspected tables must equal the run's (roundtrip.json records
    the largest difference; a ConfigError when they differ, as that is a bug of the export or of
    inspect)."""
    import tempfile

    from ..checkpoint import trained_model
    from ..train import probe_batch

    run_folder, out = Path(run_folder), Path(out)
    cfg, model, corpus = trained_model(run_folder, meta_path)
    with tempfile.TemporaryDirectory() as tmp:
        to_gpt2(model).save_pretrained(tmp)
        summary = inspect(tmp, out, sequences=probe_batch(cfg, corpus), probe_config=cfg.probe,
                          name=f"{run_folder.name} (exported)")
    diffs = {}
    for table in ("probes", "bounds"):
        ours = pd.read_csv(out / f"{table}.csv")
        run = pd.read_csv(run_folder / f"{table}.csv")
        diffs[table] = compare_final(ours, run[run["step"] == run["step"].max()])
    record = {"run": run_folder.name, "step": int(pd.read_csv(run_folder / "probes.csv")["step"].max()), **diffs}
    write_json(out / "roundtrip.json", record)
    bad = [t for t, d in diffs.items() if d["missing"] or d["max_abs_diff"] > 0]
    if bad:
        raise ConfigError(f"{out}: the inspected export differs from run {run_folder.name}'s final probe in "
                          + ", ".join(f"{t} ({diffs[t]})" for t in bad))
    return summary | {"roundtrip": record}


def compare_final(inspected: pd.DataFrame, final: pd.DataFrame) -> dict:
    """Rows of a run's final probe against the same rows inspected: how many matched, how many of
    the run's are missing, and the largest absolute difference of their values."""
    keys = ["point", "layer", "sublayer", "quantity"]
    values = ["value"] if "value" in final else ["measured", "bound"]
    both = final.merge(inspected, on=keys, how="left", suffixes=("", "_inspected"), indicator=True)
    missing = int((both["_merge"] != "both").sum())
    diff = pd.concat([(both[v] - both[f"{v}_inspected"]).abs() for v in values])
    return {"rows": int(len(final)), "missing": missing, "max_abs_diff": float(diff.max()) if len(diff) else 0.0}


