"""The study's figures, drawn only from the tables (so they regenerate without retraining).

Three plotting functions, one per kind of figure:
    plot_per_layer  a quantity against the sub-layer index k, facets by row x dt, hue by variant
                    (figures 1 moments, 3 backward stability, 5 bound tightness)
    plot_growth     a final-layer moment against model depth with the selected fitted law (figure 2)
    plot_losses     training and validation loss against step (figure 4)
A "variant" is the placement, with the weight decay added where the grid has several
(``pre wd=0``). Diverged runs are drawn dotted and named in the legend.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import _atomic  # noqa: E402
from .tables import MOMENTS, PARAMS, final_profiles  # noqa: E402

STYLE = Path(__file__).with_name("style.mplstyle")
PLACEMENT_ORDER = ["pre", "peri", "post", "none"]
MOMENT_LABELS = {"mean_abs": "mean |x|", "var_entry": "entry-wise variance",
                 "var_data": "data-wise variance", "mean_norm": "mean ||x||"}


def use_style() -> None:
    plt.style.use(STYLE)


def save(fig, stem: str | Path) -> list[Path]:
    """PNG and PDF with no timestamps or software versions in them (byte-stable)."""
    stem = Path(stem)
    meta = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}
    paths = []
    for ext, md in meta.items():
        path = stem.with_suffix(f".{ext}")
        _atomic(path, lambda f, ext=ext, md=md: fig.savefig(f, format=ext, metadata=md))
        paths.append(path)
    plt.close(fig)
    return paths


def add_variant(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Label each row with its variant and whether its run diverged."""
    df = df.copy()
    several_wd = runs["weight_decay"].nunique() > 1
    df["variant"] = df["placement"] + (" wd=" + df["weight_decay"].map("{:g}".format) if several_wd else "")
    status = runs.set_index(PARAMS)["status"]
    df["status"] = [status.get(tuple(r), "completed") for r in df[PARAMS].itertuples(index=False)]
    return df


def _palette(variants) -> dict:
    order = sorted(set(variants), key=lambda v: (PLACEMENT_ORDER.index(v.split()[0]), v))
    return dict(zip(order, sns.color_palette("colorblind", len(order))))


def plot_per_layer(df: pd.DataFrame, row: str, row_order: list, ylabel: dict | None = None,
                   bound: str | None = None, logy: bool = True, title: str = ""):
    """Facets row x dt of value against sub-layer k, one line per variant; ``bound`` (a column)
    is drawn dashed in the variant's colour. Seeds are averaged (band: one standard deviation)."""
    use_style()
    dts = sorted(df["dt"].unique(), reverse=True)
    palette = _palette(df["variant"])
    fig, axes = plt.subplots(len(row_order), len(dts), figsize=(3.2 * len(dts), 2.6 * len(row_order)),
                             squeeze=False, sharex=True)
    for i, r in enumerate(row_order):
        for j, dt in enumerate(dts):
            ax = axes[i, j]
            sub = df[(df[row] == r) & (df["dt"] == dt)]
            if sub.empty:
                ax.set_visible(False)
                continue
            for (variant, status), g in sub.groupby(["variant", "status"], sort=True):
                color = palette[variant]
                label = variant if status == "completed" else f"{variant} ({status})"
                sns.lineplot(data=g, x="sublayer", y="value", ax=ax, color=color, label=label,
                             errorbar="sd", linestyle="-" if status == "completed" else ":")
                if bound is not None and g[bound].notna().any():
                    b = g.groupby("sublayer")[bound].mean()
                    ax.plot(b.index, b.values, "--", color=color, linewidth=1.0, alpha=0.8)
            if logy:
                ax.set_yscale("log")
            ax.set_title(f"dt = {dt:g}" if i == 0 else "")
            ax.set_xlabel("sub-layer k" if i == len(row_order) - 1 else "")
            ax.set_ylabel((ylabel or {}).get(r, r) if j == 0 else "")
            if ax.get_legend() is not None and not (i == 0 and j == len(dts) - 1):
                ax.get_legend().remove()
    if bound is not None:
        axes[0, -1].plot([], [], "--", color="gray", label="bound")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(title)
    return fig


def plot_growth(last: pd.DataFrame, growth: pd.DataFrame, title: str = ""):
    """Final-layer moment against depth, facets moment x dt, with the law BIC selected (dashed)."""
    use_style()
    dts = sorted(last["dt"].unique(), reverse=True)
    palette = _palette(last["variant"])
    fig, axes = plt.subplots(len(MOMENTS), len(dts), figsize=(3.2 * len(dts), 2.4 * len(MOMENTS)),
                             squeeze=False, sharex=True)
    fits = growth[(growth["axis"] == "depth") & growth["selected"]]
    for i, q in enumerate(MOMENTS):
        for j, dt in enumerate(dts):
            ax = axes[i, j]
            sub = last[(last["quantity"] == q) & (last["dt"] == dt)]
            for variant, g in sub.groupby("variant", sort=True):
                color = palette[variant]
                sns.lineplot(data=g, x="n_layer", y="value", ax=ax, color=color, marker="o",
                             linestyle="", errorbar="sd", label=variant)
                f = fits.merge(g[PARAMS].drop(columns="n_layer").drop_duplicates(),
                               on=[k for k in PARAMS if k != "n_layer"])
                f = f[f["quantity"] == q]
                xs = np.linspace(g["n_layer"].min(), g["n_layer"].max(), 50)
                for _, fr in f.iterrows():
                    ax.plot(xs, _law(fr, xs), "--", color=color, linewidth=1.0)
            ax.set_yscale("log")
            ax.set_title(f"dt = {dt:g}" if i == 0 else "")
            ax.set_xlabel("depth (blocks)" if i == len(MOMENTS) - 1 else "")
            ax.set_ylabel(f"final-layer {MOMENT_LABELS[q]}" if j == 0 else "")
            if ax.get_legend() is not None and not (i == 0 and j == len(dts) - 1):
                ax.get_legend().remove()
    axes[0, -1].plot([], [], "--", color="gray", label="fitted law (BIC)")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(title)
    return fig


def _law(fit: pd.Series, x: np.ndarray) -> np.ndarray:
    if fit["law"] == "exponential":
        return fit["a"] * np.exp(fit["b"] * x)
    c = 0.0 if np.isnan(fit["c"]) else fit["c"]
    return fit["a"] + fit["b"] * x + c * x ** 2


def plot_losses(metrics: pd.DataFrame, title: str = ""):
    """Training loss (line) and validation loss (markers) against step, facets depth x dt.
    A diverged run ends with an x at its last finite loss."""
    use_style()
    depths, dts = sorted(metrics["n_layer"].unique()), sorted(metrics["dt"].unique(), reverse=True)
    palette = _palette(metrics["variant"])
    fig, axes = plt.subplots(len(depths), len(dts), figsize=(3.2 * len(dts), 2.4 * len(depths)),
                             squeeze=False, sharex=True, sharey=True)
    for i, depth in enumerate(depths):
        for j, dt in enumerate(dts):
            ax = axes[i, j]
            sub = metrics[(metrics["n_layer"] == depth) & (metrics["dt"] == dt)]
            for (variant, status), g in sub.groupby(["variant", "status"], sort=True):
                color = palette[variant]
                tr = g.groupby("step")["train_loss"].mean()
                ax.plot(tr.index, tr.values, color=color, linewidth=0.8, alpha=0.7,
                        label=variant if status == "completed" else f"{variant} ({status})")
                va = g.dropna(subset=["val_loss"]).groupby("step")["val_loss"].mean()
                ax.plot(va.index, va.values, "o", color=color, markersize=3)
                if status == "diverged":
                    finite = tr[np.isfinite(tr)]
                    if len(finite):
                        ax.plot(finite.index[-1], finite.values[-1], "x", color=color, markersize=8)
            ax.set_title(f"L = {depth}, dt = {dt:g}")
            ax.set_xlabel("step" if i == len(depths) - 1 else "")
            ax.set_ylabel("loss" if j == 0 else "")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    axes[0, -1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(title)
    return fig


# -- the five figures of the study -----------------------------------------------------------
def largest_depth(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["n_layer"] == df["n_layer"].max()]


def figure_moments(probes: pd.DataFrame, bounds: pd.DataFrame, runs: pd.DataFrame):
    """Figure 1: hidden-state moments per layer at the largest depth, with their bounds."""
    prof = largest_depth(final_profiles(probes))
    prof = prof[prof["quantity"].isin(["mean_abs", "var_entry", "var_data"])]
    b = bounds[["step", "sublayer", "quantity", "bound"] + PARAMS]
    prof = add_variant(prof.merge(b, on=PARAMS + ["step", "sublayer", "quantity"], how="left"), runs)
    L = int(prof["n_layer"].max())
    return plot_per_layer(prof, "quantity", ["mean_abs", "var_entry", "var_data"], MOMENT_LABELS,
                          bound="bound", title=f"Hidden-state moments per layer, {L} blocks (dashed: proven bound)")


def figure_growth(probes: pd.DataFrame, growth: pd.DataFrame, runs: pd.DataFrame):
    """Figure 2: final-layer moment against depth, with fitted growth laws."""
    prof = final_profiles(probes)
    last = prof[(prof["sublayer"] == prof.groupby(PARAMS)["sublayer"].transform("max"))
                & prof["quantity"].isin(MOMENTS)]
    return plot_growth(add_variant(last, runs), growth, title="Growth with depth: last-layer moments")


def figure_backward(probes: pd.DataFrame, runs: pd.DataFrame):
    """Figure 3: adjoint norms per probe point and parameter-gradient norms per block."""
    last = probes[probes["step"] == probes.groupby(PARAMS)["step"].transform("max")]
    last = largest_depth(last)
    adj = last[last["quantity"] == "adjoint_norm"].assign(row="adjoint_norm")
    blocks = last[(last["point"] == "block") & (last["quantity"] == "grad_norm")]
    blocks = blocks.assign(row="block_grad_norm", sublayer=2 * blocks["layer"] + 2)
    df = add_variant(pd.concat([adj, blocks], ignore_index=True), runs)
    L = int(df["n_layer"].max())
    return plot_per_layer(df, "row", ["adjoint_norm", "block_grad_norm"],
                          {"adjoint_norm": "||dLoss/dx^(k)||", "block_grad_norm": "block gradient norm"},
                          title=f"Backward stability, {L} blocks, last probe (block gradients at the block's last sub-layer)")


def figure_losses(metrics: pd.DataFrame, runs: pd.DataFrame):
    """Figure 4: training and validation loss curves."""
    return plot_losses(add_variant(metrics, runs), title="Training (lines) and validation (dots) loss")


def figure_tightness(bounds: pd.DataFrame, runs: pd.DataFrame):
    """Figure 5: measured / bound per layer at the last probe, largest depth."""
    fwd = bounds[bounds["exact"].astype(bool) & (bounds["sublayer"] > 0)]
    fwd = largest_depth(fwd[fwd["step"] == fwd.groupby(PARAMS)["step"].transform("max")])
    df = add_variant(fwd.rename(columns={"ratio": "value"}), runs)
    L = int(df["n_layer"].max())
    return plot_per_layer(df, "quantity", list(MOMENTS), {q: f"{MOMENT_LABELS[q]}: measured / bound" for q in MOMENTS},
                          title=f"Bound tightness, {L} blocks (1 = bound attained)")


FIGURES = {
    "fig1_moments": figure_moments,
    "fig2_growth": figure_growth,
    "fig3_backward": figure_backward,
    "fig4_losses": figure_losses,
    "fig5_tightness": figure_tightness,
}
