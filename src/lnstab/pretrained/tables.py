"""The study's tables of its inspections: every model's stream in one long table (inspected.csv),
one row per model (inspected_models), and for the real models (hooked families) the per-group
statistics (inspected_stream), the depth statistics per group of sequences (inspected_depth), the
norms' gains (inspected_gains) and the quantisation effect (inspected_quantisation)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd



GAIN_COLUMNS = ["layer", "norm", "role", "gain_mean", "gain_rms", "gain_max_abs"]  # gains.csv (stream.gain_rows)


def gain_growth(gains) -> float:
    """How much the norms that set a sub-layer's size grow over depth: the last layer's rms gain
    over the first's, of the ``step`` norms where the family has them, else the ``input`` norms
    (mean over the layer's norms of that role)."""
    inner = gains[gains["layer"].between(0, gains["layer"].max() - 1)] if len(gains) else gains
    role = "step" if (inner["role"] == "step").any() else "input"
    per_layer = inner[inner["role"] == role].groupby("layer")["gain_rms"].mean()
    return float(per_layer.iloc[-1] / per_layer.iloc[0]) if len(per_layer) > 1 else float("nan")


INSPECTED_QUANTITIES = ("mean_abs", "var_entry", "var_data", "mean_norm", "max_abs", "adjoint_norm",
                        "dim_max_1", "dim_max_over_median")
MODEL_COLUMNS = ("model", "model_type", "placement", "norm", "n_layer", "n_params", "tokens", "dtype", "finite",
                 "first_nonfinite_sublayer", "loss", "bounds", "bound_checks", "bound_violations", "max_ratio")


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


PLACEMENT_ORDER = {"pre": 0, "peri": 1, "post": 2}  # the paper's order; other placements after
DEPTH_COLUMNS = ["name", "placement", "sequences", "n_sequences", "loss_corpus", "loss_licence", "depth_exponent",
                 "depth_exponent_low", "depth_exponent_high", "forward", "half_factor", "growth_first_block",
                 "adjoint_step", "backward", "data_over_entry_var"]
REAL_COLUMNS = ["name", "model", "licence", "placement", "norm", "n_layer", "d_model", "n_params", "quantisation",
                "tokens", "loss_corpus_bos", "loss_corpus_no_bos", "unigram_corpus", "loss_licence_bos",
                "loss_licence_no_bos", "unigram_licence", "depth_exponent", "depth_exponent_low",
                "depth_exponent_high", "forward", "adjoint_step", "backward", "bound_checks", "bound_violations",
                "max_ratio", "massive_ratio", "massive_sublayer", "massive_position", "massive_token", "massive_dim",
                "massive_ratio_sum", "gain_growth"]  # wall-clock numbers stay in summary.json: tables are byte-stable


def _massive(stream: pd.DataFrame) -> dict:
    """Where the stream's massive activation sits (all sequences): the point whose largest
    dimension's max |x| over the median dimension's is largest, and at that point the largest
    |x|'s position, token id and dimension; for Post-LN the same ratio on the sums."""
    a = stream[stream["sequences"] == "all"]
    ratio = a[(a["quantity"] == "dim_max_over_median") & (a["point"] != "sum")]
    if ratio.empty:
        return {}
    top = ratio.loc[ratio["value"].idxmax()]
    at = a[(a["sublayer"] == top["sublayer"]) & (a["point"] == top["point"])].set_index("quantity")["value"]
    sums = a[(a["quantity"] == "dim_max_over_median") & (a["point"] == "sum")]["value"]
    return {"massive_ratio": top["value"], "massive_sublayer": int(top["sublayer"]),
            "massive_position": int(at["max_abs_position"]), "massive_token": int(at["max_abs_token"]),
            "massive_dim": int(at["max_abs_dim"]), "massive_ratio_sum": float(sums.max()) if len(sums) else None}


def real_model_tables(folders: dict[str, str | Path]) -> dict[str, pd.DataFrame]:
    """inspected_stream, inspected_depth, inspected_gains, inspected_quantisation and
    inspected_real (one row per real model: what the summary's "Real models" section shows) of the
    inspections of hooked families among ``folders`` (GPT-2 family inspections have none)."""
    streams, depths, gains, quants, real = [], [], [], [], []
    for name, folder in sorted(folders.items()):
        folder = Path(folder)
        s = json.loads((folder / "summary.json").read_text())
        if "depth" not in s:
            continue
        prov = json.loads((folder / "provenance.json").read_text())
        stream = pd.read_csv(folder / "stream.csv")
        streams.append(stream.assign(name=name, placement=s["placement"], depth=stream["sublayer"] / stream["sublayer"].max()))
        texts = s.get("texts", {})
        for group, d in s["depth"].items():
            depths.append({"name": name, "placement": s["placement"], "sequences": group,
                           "loss_corpus": texts.get("corpus", {}).get(f"loss_{group}"),
                           "loss_licence": texts.get("python_licence", {}).get(f"loss_{group}"), **d})
        g = pd.read_csv(folder / "gains.csv")
        gains.append(g.assign(name=name))
        q = pd.read_csv(folder / "quantisation.csv")
        if len(q):  # (an empty one would make every column of the concatenation an object column)
            quants.append(q.assign(name=name))
        row = {k: s.get(k) for k in REAL_COLUMNS}
        row.update(name=name, licence=prov.get("licence"),
                   quantisation=" ".join(f"{k}:{v}" for k, v in prov.get("quantisation", {"F32": "all"}).items()))
        for text, label in (("corpus", "corpus"), ("python_licence", "licence")):
            for key in ("loss_bos", "loss_no_bos", "unigram"):
                col = f"{key}_{label}" if key == "unigram" else f"{key.replace('loss_', 'loss_' + label + '_')}"
                row[col] = texts.get(text, {}).get(key)
        row.update({k: s["depth"].get("all", {}).get(k) for k in ("depth_exponent", "depth_exponent_low",
                                                                    "depth_exponent_high", "forward", "adjoint_step",
                                                                    "backward")})  # none: the stream is not finite
        row.update(_massive(stream))
        row["gain_growth"] = gain_growth(g)
        real.append(row)
    frame = lambda parts, cols=None: (pd.concat(parts, ignore_index=True) if parts  # noqa: E731
                                      else pd.DataFrame(columns=cols or []))
    stream = frame(streams, ["name", "placement", "sequences", "point", "layer", "sublayer", "depth", "quantity", "value"])
    quant = frame(quants, ["name", "format", "tensors", "quantity", "points", "max_rel_change", "median_rel_change"])
    return {"inspected_stream": stream[["name", "placement", "sequences", "point", "layer", "sublayer", "depth",
                                        "quantity", "value"]],
            "inspected_depth": pd.DataFrame(depths, columns=DEPTH_COLUMNS),
            "inspected_gains": frame(gains, ["name", *GAIN_COLUMNS])[["name", *GAIN_COLUMNS]],
            "inspected_quantisation": quant[["name", "format", "tensors", "quantity", "points", "max_rel_change",
                                             "median_rel_change"]],
            "inspected_real": pd.DataFrame(real, columns=REAL_COLUMNS).sort_values(
                "placement", key=lambda p: p.map(PLACEMENT_ORDER).fillna(9), kind="stable").reset_index(drop=True)}


def write_inspection_tables(folders: dict[str, str | Path], tables_dir: str | Path) -> None:
    from ..tables import write_table

    long, models = inspection_tables(folders)
    write_table(long, Path(tables_dir) / "inspected")
    write_table(models, Path(tables_dir) / "inspected_models")
    for table, df in real_model_tables(folders).items():
        write_table(df, Path(tables_dir) / table)
