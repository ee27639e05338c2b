"""The study's tables of its inspections: every model's stream in one long table (inspected.csv),
one row per model (inspected_models)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


INSPECTED_QUANTITIES = ("mean_abs", "var_entry", "var_data", "mean_norm", "max_abs", "adjoint_norm",
                        "dim_max_1", "dim_max_over_median")
MODEL_COLUMNS = ("model", "model_type", "placement", "norm", "n_layer", "n_params", "tokens", "dtype", "finite",
                 "first_nonfinite_sublayer", "loss", "bound_checks", "bound_violations", "max_ratio")


def inspection_tables(folders: dict[str, str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inspected, inspected_models) of the inspection folders {name: folder}: the stream's rows at
    every point with their bound where one is proven (long), and one row per model with its
    summary, its largest dimension's max |x| over the median dimension's, and for an exported run
    the largest difference from the run's final probe. Wall-clock numbers stay in summary.json."""
    from ..stats import HIDDEN_POINTS

    longs, models = [], []
    for name, folder in sorted(folders.items()):
        folder = Path(folder)
        s = json.loads((folder / "summary.json").read_text())
        p = pd.read_csv(folder / "probes.csv")
        p = p[p["point"].isin(HIDDEN_POINTS) & p["quantity"].isin(INSPECTED_QUANTITIES)]
        b = pd.read_csv(folder / "bounds.csv")[["sublayer", "quantity", "bound"]].drop_duplicates(["sublayer", "quantity"])
        p = p.merge(b, on=["sublayer", "quantity"], how="left")
        longs.append(p.assign(name=name, model=s["model"], placement=s["placement"], norm=s["norm"], n_layer=s["n_layer"],
                              depth=p["sublayer"] / p["sublayer"].max()))
        row = {"name": name, **{k: s.get(k) for k in MODEL_COLUMNS}}
        over = p.loc[p["quantity"] == "dim_max_over_median", "value"]
        row["dim_max_over_median"] = float(over.max()) if len(over) else None
        rt = folder / "roundtrip.json"
        row["roundtrip_max_abs_diff"] = (max(d["max_abs_diff"] for k, d in json.loads(rt.read_text()).items()
                                             if isinstance(d, dict)) if rt.exists() else None)
        models.append(row)
    cols = ["name", "model", "placement", "norm", "n_layer", "sublayer", "depth", "point", "layer", "quantity",
            "value", "bound"]
    long = pd.concat(longs, ignore_index=True)[cols] if longs else pd.DataFrame(columns=cols)
    long = long.sort_values(["name", "sublayer", "quantity"]).reset_index(drop=True)
    return long, pd.DataFrame(models, columns=["name", *MODEL_COLUMNS, "dim_max_over_median", "roundtrip_max_abs_diff"])


def write_inspection_tables(folders: dict[str, str | Path], tables_dir: str | Path) -> None:
    from ..tables import write_table

    long, models = inspection_tables(folders)
    write_table(long, Path(tables_dir) / "inspected")
    write_table(models, Path(tables_dir) / "inspected_models")
