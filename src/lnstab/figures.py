"""The study's figures, drawn only from the tables (so they regenerate without retraining).

One drawing function, ``panel_grid``, serves every figure of the kind "a quantity against an
axis, one line per variant, facets"; ``plot_losses`` adds the corpus baselines and smoothing.
Both are seaborn: a FacetGrid for the facets, shared axes and reference lines, and one lineplot
per variant (``variant_lines``) for the mean over seeds and its band.
A *variant* is a placement with what the grid varies within it (``pre wd=0``, ``peri dt=0.1``).
Each placement has one colour-blind-safe hue (Okabe-Ito); variants of one placement differ by
shade and marker, fixed for the whole study (a variant looks the same in every figure); the
screen's candidate block is black with diamonds, apart from every reference. Means over
seeds (geometric on log axes) are drawn with a band from the smallest to the largest seed.
Runs that did not learn are dotted, instability demonstrations dash-dotted, both named in the legend.

FIGURES maps each figure's name to its function and the tables it reads: the workflow's rules
and the report are generated from it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .io import _atomic, read_table
from .stats import HIDDEN_POINTS, RUN_KEYS, at_last_step, depth_exponent, increment_ratios

STYLE = Path(__file__).with_name("style.mplstyle")  # the default; config key figure_style names another
_style = [STYLE]  # the style pyplot() applies (use_style)
# Okabe-Ito: one hue per placement, distinct for every common colour-vision deficiency
PLACEMENT_COLORS = {"pre": "#0072B2", "peri": "#D55E00", "post": "#009E73", "none": "#CC79A7",
                    "output": "#E69F00", "mix": "#56B4E9", "deepnorm": "#000000",
                    "parallel": "#7F7F7F"}  # every placement of PLACEMENTS and MEASURED_ONLY_PLACEMENTS
MARKERS = ("o", "^", "s", "D", "v")
MOMENT_LABELS = {"mean_abs": r"mean $|x|$", "var_entry": "entry-wise variance",
                 "var_data": "data-wise variance", "mean_norm": r"mean $\|x\|$"}
AT_POINT = r"value at $x^{(k)}$"


def pyplot():
    """matplotlib's pyplot with the Agg backend and lnstab's style; imported here, so that reading
    FIGURES (the workflow does it at every parse) costs no matplotlib import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use(_style[0])
    return plt


def use_style(path: str | Path | None) -> None:
    """Draw the next figures in the mplstyle file ``path`` (None or "": lnstab's own)."""
    path = Path(path) if path else STYLE
    if not path.is_file():
        raise FileNotFoundError(f"figure style {path}: no such file")
    _style[0] = path


# a paper's text width (two-column venues' full width) and the widest figure drawn: at 8 pt, the
# style's smallest font, a figure of MAX_WIDTH shown at PAPER_WIDTH keeps 7 pt or more
PAPER_WIDTH, MAX_WIDTH = 6.75, 7.4


def paper_width(panel_w: float, ncols: int) -> float:
    """The figure width for ``ncols`` panels of ``panel_w`` inches, narrowed to MAX_WIDTH."""
    return min(panel_w * ncols + 0.6, MAX_WIDTH)


def save(fig, stem: str | Path) -> list[Path]:
    """PNG and PDF with no timestamps or software versions in them (byte-stable)."""
    stem = Path(stem)
    meta = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}
    paths = []
    for ext, md in meta.items():
        path = stem.with_suffix(f".{ext}")
        _atomic(path, lambda f, ext=ext, md=md: fig.savefig(f, format=ext, metadata=md))
        paths.append(path)
    pyplot().close(fig)
    return paths


# -- variants and their style ----------------------------------------------------------------
def default_parametrisation(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of runs at the default last maps (init scale 1, dt not folded): the figures draw those;
    the dt ablation and the init-scale tuning trials are tables (dt_ablation, losses, claims)."""
    if "init_scale" not in df:
        return df
    return df[(df["init_scale"] == 1) & ~df["fold_dt"].astype(bool)]


def add_variant(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Label rows with their variant, and with their run's ``kind``: learned, not learned,
    instability demo (diverged runs count as not learned). Only runs at the default last maps.
    A variant names what the grid varies within its placement, and the learning rate wherever
    placements train at different ones. Its colour and marker (columns ``color``, ``marker``)
    come from every variant of the study, so a variant looks the same in every figure."""
    runs, df = default_parametrisation(runs), default_parametrisation(df)
    study = runs[runs["role"] == "study"]
    lr_differs = study["lr"].nunique() > 1
    varied = {p: [k for k in ("weight_decay", "dt", "lr") if g[k].nunique() > 1 or (k == "lr" and lr_differs)]
              for p, g in study.groupby("placement")}
    short = {"weight_decay": "wd", "dt": "dt", "lr": "lr"}

    def label(r):
        keys = varied.get(r.placement, []) if r.role == "study" else ["lr"]
        return " ".join([r.placement] + [f"{short[k]}={getattr(r, k):g}" for k in keys])

    styles = variant_styles({label(r) for r in runs.itertuples(index=False)})
    df = df.merge(runs[RUN_KEYS + ["role", "learned"]], on=RUN_KEYS, how="inner")
    df["variant"] = [label(r) for r in df.itertuples(index=False)]
    df["color"] = [styles[v][0] for v in df["variant"]]
    df["marker"] = [styles[v][1] for v in df["variant"]]
    df["kind"] = np.where(df["role"] != "study", "instability demo",
                          np.where(df["learned"].astype(bool), "learned", "not learned"))
    return df


REAL_MARKERS = ("P", "X", "*", "h", "p")  # inspected checkpoints: markers no study variant uses


def with_model_styles(df: pd.DataFrame, inspected: pd.DataFrame) -> pd.DataFrame:
    """Rows of inspected models (column ``name``) with their variant, colour and marker: the
    placement's hue and a marker of their own, fixed by every model the inspected table holds,
    so a model looks the same in every figure."""
    models = inspected.drop_duplicates("name").sort_values(["placement", "name"])
    style = {}
    for _, g in models.groupby("placement", sort=False):
        for i, r in enumerate(g.itertuples(index=False)):
            style[r.name] = (PLACEMENT_COLORS.get(r.placement, "#000000"), REAL_MARKERS[i % len(REAL_MARKERS)])
    return df.assign(variant=df["placement"] + " " + df["name"], color=[style[n][0] for n in df["name"]],
                     marker=[style[n][1] for n in df["name"]])


def styles_of(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """variant -> (colour, marker): the study-wide ones add_variant set, else by the variants drawn."""
    out = variant_styles(df["variant"])  # rows without a study-wide style: a real model, a screened block
    if "color" in df:
        first = df.dropna(subset=["color"]).drop_duplicates("variant")
        out.update(zip(first["variant"], zip(first["color"], first["marker"])))
    return out


def variant_styles(variants) -> dict[str, tuple[str, str]]:
    """variant -> (colour, marker): the placement's hue for its first variant, then alternately
    darker and lighter shades of it (neighbours in the legend never share a near shade)."""
    import matplotlib.colors as mcolors

    out = {}
    for p in PLACEMENT_COLORS:
        mine = sorted(v for v in set(variants) if v.split()[0] == p)
        for i, v in enumerate(mine):
            base = np.array(mcolors.to_rgb(PLACEMENT_COLORS[p]))
            step = (i + 1) // 2  # 0, 1, 1, 2, 2, ...
            shade = base * (1 - 0.4 * step) if i % 2 else base + (1 - base) * min(0.6, 0.45 * step)
            out[v] = (mcolors.to_hex(np.clip(shade, 0, 1)), MARKERS[i % len(MARKERS)])
    for i, v in enumerate(sorted(v for v in set(variants) if v not in out)):  # a screened block of one's own
        out[v] = ("#000000", MARKERS[i % len(MARKERS)])
    return out


LINESTYLES = {"learned": "-", "not learned": ":", "instability demo": "-."}


def seed_range(values) -> tuple[float, float]:
    """The band around a mean over seeds: from the smallest seed to the largest (a +-std band is
    meaningless on a log axis and a confidence interval of 3 seeds says little)."""
    return values.min(), values.max()


def variant_lines(data: pd.DataFrame, x: str, y: str = "value", styles: dict | None = None, markers=True,
                  markers_only=False, band=True, ax=None, **line_kws) -> None:
    """One line per (variant, kind) of ``data`` on ``ax``, through seaborn's lineplot: the mean over
    seeds at each ``x`` (seaborn aggregates in the axis's scale, so on a log axis it is the
    geometric mean and the line sits inside its band), with the seeds' range as a band (as bars
    with ``markers_only``). Each line is labelled with its variant (and its kind when that is not
    "learned"), in the variant's study-wide colour and marker."""
    import seaborn as sns

    ax = ax or pyplot().gca()
    data = data.dropna(subset=[y])
    if ax.get_yscale() == "log":  # a non-positive value has no place on a log axis
        data = data[data[y] > 0]
    styles = styles or styles_of(data)
    for (variant, kind), g in data.groupby(["variant", "kind"], sort=True):
        color, marker = styles[variant]
        before = len(ax.lines)
        sns.lineplot(data=g, x=x, y=y, estimator="mean", errorbar=seed_range if band else None,
                     err_style="bars" if markers_only else "band",
                     err_kws={"linewidth": 1.0} if markers_only else {"alpha": 0.15, "linewidth": 0},
                     color=color, marker=marker if markers else None, markersize=3.5, markeredgewidth=1.0,
                     markeredgecolor=color, linestyle="none" if markers_only else LINESTYLES[kind], legend=False,
                     ax=ax, **line_kws)
        ax.lines[before].set_label(variant if kind == "learned" else f"{variant} ({kind})")


# -- one function for every "quantity against an axis" figure -------------------------------
def panel_grid(df: pd.DataFrame, x: str, row: str | None, col: str, row_labels: dict, col_title,
               xlabel: str, bound: str | None = None, logy=True, sharey="row", title: str = "",
               markers_only=False, hlines: dict | None = None, panel_w=3.0, panel_h=2.3, col_order=None,
               logx=False, bound_label="dashed: the run's proven bound", integer_x=True, xticks=None):
    """Facets row x col (seaborn's FacetGrid) of ``value`` against ``x``, one line per variant
    (variant_lines); ``bound`` (a column) dashed in the variant's colour, and the variant's legend
    entry shows both lines; ``hlines`` {label: y} grey reference lines in every panel."""
    import seaborn as sns

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    rows = list(row_labels) if row else [None]
    cols = col_order or sorted(df[col].unique(), reverse=True)
    styles = styles_of(df)
    grid = sns.FacetGrid(df, row=row, col=col, row_order=rows if row else None, col_order=cols, sharex=True,
                         sharey=sharey, height=panel_h, aspect=panel_w / panel_h, despine=False)
    if logy:  # before drawing: seaborn then averages the seeds in log space
        grid.set(yscale="log")
    if logx:
        grid.set(xscale="log")
    bounds_of = {}  # legend label -> its dashed bound line

    def draw(data, color=None):  # FacetGrid passes each facet's rows (and a colour, unused)
        ax = plt.gca()
        variant_lines(data, x, styles=styles, markers_only=markers_only, ax=ax)
        if bound is not None:
            for (variant, kind), g in data.dropna(subset=[bound]).groupby(["variant", "kind"], sort=True):
                b = g.groupby(x)[bound].mean()
                (line,) = ax.plot(b.index, b.values, "--", color=styles[variant][0], linewidth=1.0)
                bounds_of[variant if kind == "learned" else f"{variant} ({kind})"] = line

    grid.map_dataframe(draw)
    for name, y in (hlines or {}).items():
        grid.refline(y=y, color="0.4", linewidth=0.8, linestyle=(0, (4, 2)) if "bigram" in name else ":")
    axes = grid.axes
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            if logx and xticks is not None:  # the values drawn, labelled as numbers (a log axis labels decades only)
                from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

                ax.xaxis.set_major_locator(FixedLocator(list(xticks)))
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_locator(NullLocator())
            elif not logx and integer_x:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layer indices and steps
            ax.set_title(col_title(c) if i == 0 else "")
            ax.set_xlabel(xlabel if i == len(rows) - 1 else "")
            ax.set_ylabel(row_labels[r] if j == 0 and row else (row_labels.get(None, "") if j == 0 else ""))
    fig = grid.figure
    fig.set_size_inches(paper_width(panel_w, len(cols)), panel_h * len(rows) + 0.9)
    fig.set_layout_engine("constrained")  # after FacetGrid's tight layout: the legend goes outside, below
    extra = {bound_label: "--"} if bounds_of else {}
    extra.update({name: (0, (4, 2)) if "bigram" in name else ":" for name in hlines or {}})
    finish(fig, axes, title, extra, bounds_of)
    return fig


def finish(fig, axes, title: str, extra: dict[str, object], paired: dict | None = None) -> None:
    """One legend for the figure, below the panels, variants in placement order, then the grey
    reference lines of ``extra`` (label -> linestyle); the title above. A variant of ``paired``
    (label -> its dashed bound line) shows its line and its bound side by side in one entry."""
    plt = pyplot()
    from matplotlib.legend_handler import HandlerTuple

    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    for lab, dashed in (paired or {}).items():
        if lab in handles:
            handles[lab] = (handles[lab], dashed)
    order = list(PLACEMENT_COLORS)
    labels = sorted(handles, key=lambda lab: (order.index(lab.split()[0]) if lab.split()[0] in order else 9, lab))
    for name, ls in extra.items():
        handles[name] = plt.Line2D([], [], color="0.35", linestyle=ls)
        labels.append(name)
    if not labels:  # e.g. the smoke study, where nothing learns
        fig.text(0.5, 0.5, "nothing to draw: no run of this figure learned (table runs)", ha="center")
        labels, handles = ["no run drawn"], {"no run drawn": plt.Line2D([], [], color="none")}
    # as many columns as fit the figure's width (DejaVu at the legend's size: about 0.6 em a character)
    size = pyplot().rcParams["legend.fontsize"]
    size = size if isinstance(size, (int, float)) else 8.0
    entry = max(map(len, labels)) * 0.6 * size / 72 + (3.2 if paired else 2.0) * size / 72 + 0.35
    ncol = max(1, min(len(labels), int(fig.get_figwidth() // entry)))
    fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center", ncol=ncol, frameon=False,
               handler_map={tuple: HandlerTuple(ndivide=None, pad=0.3)}, handlelength=3.2 if paired else 2.0)
    fig.suptitle(title)


def _deepest_learned(runs: pd.DataFrame) -> int:
    ok = runs[runs["learned"].astype(bool)]
    return int((ok if len(ok) else runs)["n_layer"].max())


# -- the figures -----------------------------------------------------------------------------
def study_profiles(probes: pd.DataFrame, bounds: pd.DataFrame, runs: pd.DataFrame, qs) -> tuple[pd.DataFrame, int]:
    """(the final step's rows of ``qs`` at every hidden point of the deepest trained models, with
    their proven bound, variant and kind; that depth)."""
    L = _deepest_learned(runs)
    final = at_last_step(probes[(probes["n_layer"] == L) & probes["point"].isin(HIDDEN_POINTS)])
    prof = final[final["quantity"].isin(qs)].merge(
        bounds[RUN_KEYS + ["step", "sublayer", "quantity", "bound"]], on=RUN_KEYS + ["step", "sublayer", "quantity"],
        how="left")
    return add_variant(prof, runs), L


def figure_moments(probes: pd.DataFrame, bounds: pd.DataFrame, runs: pd.DataFrame):
    """Figure 1 (the paper's Figure 1 layout): hidden-state moments against the layer index for
    the deepest trained model, each with its proven bound (dashed)."""
    qs = ["mean_abs", "var_entry", "var_data"]
    prof, L = study_profiles(probes, bounds, runs, qs)
    # the paper's selection: Pre-LN and Post-LN at the plain step dt = 1, Peri-LN at every dt
    dmax = prof["dt"].max()
    prof = prof[((prof["placement"] == "peri") | (prof["dt"] == dmax)) & (prof["kind"] != "not learned")]
    prof, rows = demonstrations_apart(prof, {None: AT_POINT})
    return panel_grid(prof, "sublayer", "row", "quantity", rows, MOMENT_LABELS.get,
                      "layer index $k$ (sub-layers)", bound="bound", sharey=False, col_order=qs, panel_w=3.4,
                      title=f"Hidden-state moments of trained {L}-block models (final step)")


def demonstrations_apart(df: pd.DataFrame, labels: dict) -> tuple[pd.DataFrame, dict]:
    """Rows of the instability demonstrations in facets of their own (column ``row``), so that a
    collapse over 15 decades does not set the scale of the comparisons the claims are about:
    (df, row labels), each label of ``labels`` (keyed by df's ``row``, None where it has none)
    once for the study's runs and once, where there are any, for the demonstrations."""
    base = df["row"] if "row" in df else pd.Series([None] * len(df), index=df.index, dtype=object)
    demo = df["kind"] == "instability demo"
    df = df.assign(row=[f"{r}{' (demo)' if d else ''}" for r, d in zip(base, demo)])
    rows = {f"{r}": text for r, text in labels.items()}
    if demo.any():
        rows.update({f"{r} (demo)": f"instability demo:\n{text}" for r, text in labels.items()})
    return df, rows


REAL_PLACEMENTS = ("pre", "peri", "post")


def figure_real_models(inspected_stream: pd.DataFrame, inspected: pd.DataFrame, probes: pd.DataFrame,
                       bounds: pd.DataFrame, runs: pd.DataFrame):
    """Figure 1 on real trained Transformers: the three moments of the stream against the depth
    k / K, for each placement its real model(s) (all sequences, before the final norm) beside the
    study's deepest trained models at dt 1, each moment relative to its own value at x^(0) (the
    embeddings: the scales of a width-32 model and a width-640 one differ), with the proven bound
    (dashed, in the same units) where the family has one."""
    qs = ["mean_abs", "var_entry", "var_data"]
    real = inspected_stream[(inspected_stream["sequences"] == "all") & (inspected_stream["point"] != "sum")
                            & inspected_stream["quantity"].isin(qs)]
    real = real.merge(inspected[["name", "sublayer", "quantity", "bound"]], on=["name", "sublayer", "quantity"],
                      how="left")
    real = with_model_styles(real, inspected).assign(kind="learned", seed=0)
    prof, L = study_profiles(probes, bounds, runs, qs)
    prof = prof[(prof["dt"] == prof["dt"].max()) & (prof["kind"] == "learned")]
    prof = prof.assign(variant=prof["variant"] + f" (study, L={L})",
                       depth=prof["sublayer"] / prof["sublayer"].max())
    df = pd.concat([real, prof], ignore_index=True)
    df = df[df["placement"].isin(REAL_PLACEMENTS)]
    keys = ["variant", "seed", "quantity"]
    start = df[df["sublayer"] == 0].set_index(keys)["value"].rename("start")
    df = df.join(start, on=keys)
    df["value"], df["bound"] = df["value"] / df["start"], df["bound"] / df["start"]
    names = {"pre": "Pre-LN", "peri": "Peri-LN", "post": "Post-LN"}
    return panel_grid(df, "depth", "quantity", "placement",
                      {q: f"{MOMENT_LABELS[q]}\nrelative to $x^{{(0)}}$" for q in qs}, names.get,
                      "depth $k / K$ (sub-layers)", bound="bound", sharey="row", col_order=list(REAL_PLACEMENTS),
                      panel_w=2.3, panel_h=1.8, integer_x=False,
                      title="Real trained Transformers beside this study's models:\nhidden-state moments over depth")


def figure_depth(runs: pd.DataFrame):
    """Figure 2: final top-of-stream mean |x| and the depth shape x^K / x^(K/2) against the
    number of blocks (points: mean over seeds; bars: min to max)."""
    rows = runs.melt(id_vars=RUN_KEYS, value_vars=["scale_final", "shape_ratio"], var_name="quantity")
    df = add_variant(rows, runs)
    # the claims' power law (stats.depth_exponent) through the geometric means over seeds, dashed,
    # with its exponent in the variant's label
    df["fit"] = np.nan
    scale = df[(df["quantity"] == "scale_final") & (df["value"] > 0) & (df["kind"] == "learned")]
    for variant, g in scale.groupby("variant"):
        means = np.exp(np.log(g["value"]).groupby(g["n_layer"]).mean())
        if len(means) >= 2:
            a = depth_exponent(means.index, means.to_numpy())
            c = float(np.exp(np.mean(np.log(means.to_numpy()) - a * np.log(means.index.to_numpy(float)))))
            df.loc[g.index, "fit"] = c * g["n_layer"].to_numpy(float) ** a
            df.loc[df["variant"] == variant, "variant"] = f"{variant} (a = {a:.2f})"
    depths = sorted(df["n_layer"].unique())
    return panel_grid(df, "n_layer", "quantity", "dt",
                      {"scale_final": r"final top mean $|x|$", "shape_ratio": r"$x^{(K)} / x^{(K/2)}$"},
                      lambda dt: f"dt = {dt:g}", "depth $L$ (blocks, log scale)", markers_only=True, logx=True,
                      xticks=depths, bound="fit", bound_label="dashed: least-squares power law $L^a$ (the claims' fit)",
                      title="Depth: top-of-stream scale and shape of the profile (final step)")


def figure_backward(probes: pd.DataFrame, runs: pd.DataFrame):
    """Figure 3: adjoint ratio ||p^(k)|| / ||p^(K)|| per layer and per-block gradient norms, at
    the final step of the deepest trained models."""
    L = _deepest_learned(runs)
    last = at_last_step(probes[probes["n_layer"] == L])
    adj = last[last["quantity"] == "adjoint_norm"]
    top = adj[adj["sublayer"] == adj.groupby(RUN_KEYS)["sublayer"].transform("max")].set_index(RUN_KEYS)["value"]
    adj = adj.assign(value=adj["value"].to_numpy() / top.loc[list(adj[RUN_KEYS].itertuples(index=False, name=None))].to_numpy(),
                     row="adjoint_ratio")
    blocks = last[(last["point"] == "block") & (last["quantity"] == "grad_norm")]
    blocks = blocks.assign(row="block_grad_norm", sublayer=2 * blocks["layer"] + 2)
    df, rows = demonstrations_apart(add_variant(pd.concat([adj, blocks], ignore_index=True), runs),
                                    {"adjoint_ratio": r"$\|p^{(k)}\| / \|p^{(K)}\|$",
                                     "block_grad_norm": "block gradient norm"})
    # a block's gradient is drawn at its last sub-layer (the caption says so)
    return panel_grid(df, "sublayer", "row", "dt", rows, lambda dt: f"dt = {dt:g}", "layer index $k$",
                      title=f"Backward stability, {L} blocks, final step")


def plot_losses(metrics: pd.DataFrame, baselines: pd.DataFrame, unit: str, smooth: int = 25):
    """Validation loss (markers, mean over seeds, band: the seeds' range) and training loss (line,
    mean over seeds, moving average over ``smooth`` steps) against step, facets depth x dt (seaborn's
    FacetGrid), shared y, with the corpus's unigram and bigram baselines."""
    import seaborn as sns

    plt = pyplot()
    depths, dts = sorted(metrics["n_layer"].unique()), sorted(metrics["dt"].unique(), reverse=True)
    styles = styles_of(metrics)
    keys = ["n_layer", "dt", "variant", "kind"]
    train = metrics.groupby(keys + ["step"])["train_loss"].mean().reset_index()
    train["train_loss"] = train["train_loss"].where(np.isfinite(train["train_loss"]))
    train["train_loss"] = train.groupby(keys)["train_loss"].transform(lambda v: v.rolling(smooth, min_periods=1).mean())
    grid = sns.FacetGrid(metrics, row="n_layer", col="dt", row_order=depths, col_order=dts, sharex=True, sharey=True,
                         height=2.3, aspect=3.2 / 2.3, despine=False)

    def draw(data, color=None):  # FacetGrid passes each facet's rows (and a colour, unused)
        ax = plt.gca()
        here = train[(train["n_layer"] == data["n_layer"].iloc[0]) & (train["dt"] == data["dt"].iloc[0])]
        variant_lines(here, "step", "train_loss", styles, markers=False, band=False, ax=ax, linewidth=0.9, alpha=0.6)
        for line in ax.lines:  # the validation lines carry the legend
            line.set_label("_" + line.get_label())
        variant_lines(data, "step", "val_loss", styles, ax=ax, linewidth=1.0)

    grid.map_dataframe(draw)
    base = {f"unigram baseline {baselines['unigram_nats'].iloc[0]:.2f}": baselines["unigram_nats"].iloc[0],
            f"bigram baseline {baselines['bigram_nats'].iloc[0]:.2f}": baselines["bigram_nats"].iloc[0]}
    for name, y in base.items():
        grid.refline(y=y, color="0.4", linewidth=0.8, linestyle=(0, (4, 2)) if "bigram" in name else ":")
    axes = grid.axes
    for i, depth in enumerate(depths):
        for j, dt in enumerate(dts):
            axes[i, j].set_title(f"L = {depth}, dt = {dt:g}")
            axes[i, j].set_xlabel("training step" if i == len(depths) - 1 else "")
            axes[i, j].set_ylabel(f"loss ({unit})" if j == 0 else "")
    axes[0, 0].set_ylim(top=baselines["unigram_nats"].iloc[0] * 1.15)
    fig = grid.figure
    fig.set_size_inches(paper_width(3.2, len(dts)), 2.3 * len(depths) + 0.9)
    fig.set_layout_engine("constrained")  # after FacetGrid's tight layout: the legend goes outside, below
    finish(fig, axes, f"Validation loss (markers) and training loss (line, {smooth}-step average)",
           {name: (0, (4, 2)) if "bigram" in name else ":" for name in base})
    return fig


def figure_losses(metrics: pd.DataFrame, runs: pd.DataFrame, baselines: pd.DataFrame):
    """Figure 4: loss curves with the corpus's unigram and bigram baselines."""
    unit = "nats/char" if baselines["tokenizer"].iloc[0] == "char" else "nats/token"
    return plot_losses(add_variant(metrics, runs), baselines, unit)


def figure_tightness(bounds: pd.DataFrame, runs: pd.DataFrame):
    """Figure 5: how much of each bound's increment the trained model uses,
    (s(x^k) - s(x^0)) / (bound_k - s(x^0)) per layer at the final step (rows that can fail only),
    and the per-sub-layer slope C_j of the forward bound (the Pre-LN slope profile)."""
    L = _deepest_learned(runs)
    inc = at_last_step(increment_ratios(bounds[bounds["n_layer"] == L]))
    inc = inc.rename(columns={"increment_ratio": "value"})[RUN_KEYS + ["sublayer", "quantity", "value"]]
    slope = at_last_step(bounds[(bounds["n_layer"] == L) & (bounds["quantity"] == "branch_norm_max")])
    slope = slope.assign(value=slope["bound"], quantity="slope")[RUN_KEYS + ["sublayer", "quantity", "value"]]
    df = add_variant(pd.concat([inc, slope], ignore_index=True), runs)
    labels = {"mean_abs": "increment ratio\n" r"of mean $|x|$", "mean_norm": "increment ratio\n" r"of mean $\|x\|$",
              "var_entry": "increment ratio\nof entry-wise var.", "var_data": "increment ratio\nof data-wise var.",
              "slope": "slope $C_j$ (bound on\n" r"max$_t\,\|branch_t\|$)"}
    # what the ratios mean and why Post-LN has no rows: the caption (workflow/report/fig5_tightness.rst)
    return panel_grid(df[df["value"] > 0], "sublayer", "quantity", "dt", labels, lambda dt: f"dt = {dt:g}",
                      "layer index $k$", panel_h=1.9, panel_w=3.4,
                      title=f"Bound tightness, {L} blocks, final step (1 = the bound's whole increment used)")


def figure_scale(scale: pd.DataFrame, runs: pd.DataFrame):
    """Figure 6: top-of-stream mean |x| and the largest weight spectral norm against the training
    step, per placement, dt and weight decay (deepest trained models)."""
    L = _deepest_learned(runs)
    s = scale[scale["n_layer"] == L].melt(id_vars=RUN_KEYS + ["step"], value_vars=["top_mean_abs", "max_spectral_norm"],
                                          var_name="quantity")
    return panel_grid(add_variant(s, runs), "step", "quantity", "dt",
                      {"top_mean_abs": r"top mean $|x|$", "max_spectral_norm": "largest weight spectral norm"},
                      lambda dt: f"dt = {dt:g}", "training step", title=f"Scale over training, {L} blocks")


# name -> (function, the tables it reads); the workflow and the report are generated from this
def figure_screen(screen_sublayers: pd.DataFrame, screen_verdicts: pd.DataFrame):
    """Figure 7: the screened architecture against Pre-, Peri- and Post-LN at the same size, at
    initialisation and after the short training: mean ||x|| per sub-layer, max_t ||branch_t||
    with its bound's slope (dashed, built-in placements), and the adjoint ratio."""
    v = screen_verdicts.set_index(["architecture", "state"])
    label = {a: f"{a} ({'candidate' if r == 'candidate' else 'reference'}): "
                f"{v.loc[(a, 'trained'), 'forward']}, backward {v.loc[(a, 'trained'), 'backward']}"
             for a, r in screen_verdicts.groupby("architecture")["role"].first().items()}
    # after training, a model that did not learn is dotted and named so: its verdict is an untrained model's
    learned = {a: str(v.loc[(a, "trained"), "learned"]).lower() in ("true", "1", "1.0") for a in label}
    df = screen_sublayers.melt(id_vars=["architecture", "state", "sublayer", "slope_bound"],
                               value_vars=["mean_norm", "branch_norm_max", "adjoint_over_top"], var_name="row")
    df = df[(df["row"] != "branch_norm_max") | (df["sublayer"] > 0)]
    df.loc[df["row"] != "branch_norm_max", "slope_bound"] = np.nan
    # the references in their placement's colour; the candidate, whatever its placement, black
    # with diamonds, so that it never shares a hue or a marker with a reference
    role = screen_verdicts.groupby("architecture")["role"].first()
    style = {a: ("#000000", "D") if role[a] == "candidate" else (PLACEMENT_COLORS.get(a.split("+")[0], "#7F7F7F"), "o")
             for a in label}
    df = df.assign(variant=df["architecture"].map(lambda a: label[a].replace("+", " ", 1)),
                   color=df["architecture"].map(lambda a: style[a][0]),
                   marker=df["architecture"].map(lambda a: style[a][1]),
                   kind=np.where((df["state"] == "trained") & ~df["architecture"].map(learned), "not learned",
                                 "learned"))
    return panel_grid(df, "sublayer", "row", "state",
                      {"mean_norm": r"mean $\|x^{(k)}\|$", "branch_norm_max": r"max$_t\,\|branch_t\|$",
                       "adjoint_over_top": r"$\|p^{(k)}\| / \|p^{(K)}\|$"},
                      lambda s: {"init": "at initialisation", "trained": "after training"}[s], "layer index $k$",
                      bound="slope_bound", sharey="row", col_order=["init", "trained"], panel_w=3.6,
                      title="Screen: the candidate against Pre-, Peri- and Post-LN at the same size")


def figure_wasserstein(wasserstein: pd.DataFrame, runs: pd.DataFrame):
    """Figure 8: W_2(T#mu, T#nu) / W_2(mu, nu) of the flow x^(0) -> x^(K) against the relative
    scale of the noise that makes nu from mu, with the measured random-direction gain of the
    flow's Jacobian ||J||_F / sqrt(T d) of the same model dashed (constant in the noise);
    deepest trained models. The worst-direction gain ||J||_2 does not depend on the noise: it
    is a column of the table, as are the other-slice ratios."""
    L = _deepest_learned(runs)
    df = wasserstein[(wasserstein["n_layer"] == L) & wasserstein["noise_scale"].notna()]
    df = df.drop(columns=["role", "learned"]).rename(columns={"rms_gain": "rms_bound", "ratio": "value"})
    df, rows = demonstrations_apart(add_variant(df, runs), {None: "$W_2$ ratio, output / input"})
    return panel_grid(df, "noise_scale", "row", "dt", rows,
                      lambda dt: f"dt = {dt:g}", "noise std / rms of the embeddings", logx=True, bound="rms_bound",
                      bound_label=r"dashed: the flow Jacobian's random-direction gain $\|J\|_F / \sqrt{T d}$ "
                                  "(measured, not a bound)", panel_h=2.8, panel_w=3.6,
                      title=f"Wasserstein sensitivity of the flow, {L} blocks, trained weights")


def figure_inspect(inspected: pd.DataFrame):
    """Figure 1's layout for inspected checkpoints (lnstab inspect): the stream's moments against
    the layer index, each with its proven bound where the family has one (dashed), and the
    largest dimension's max |x| over the median dimension's (massive activations). Models of
    different depths share the axis as the fraction k / K of the depth."""
    df = with_model_styles(inspected, inspected).assign(kind="learned")
    one_depth = df["n_layer"].nunique() == 1
    qs = ["mean_abs", "var_entry", "var_data", "dim_max_over_median"]
    labels = {**MOMENT_LABELS, "dim_max_over_median": "max $|x|$ of the top dimension\n/ that of the median one"}
    return panel_grid(df[df["quantity"].isin(qs)], "sublayer" if one_depth else "depth", None, "quantity",
                      {None: AT_POINT}, labels.get,
                      "layer index $k$ (sub-layers)" if one_depth else "depth $k / K$ (sub-layers)", bound="bound",
                      sharey=False, col_order=qs, panel_w=3.4, integer_x=one_depth,
                      title="Hidden-state moments of inspected checkpoints (lnstab inspect)")


FIGURES = {
    "fig1_moments": (figure_moments, ("probes", "bounds", "runs")),
    "fig2_depth": (figure_depth, ("runs",)),
    "fig3_backward": (figure_backward, ("probes", "runs")),
    "fig4_losses": (figure_losses, ("metrics", "runs", "baselines")),
    "fig5_tightness": (figure_tightness, ("bounds", "runs")),
    "fig6_scale": (figure_scale, ("scale", "runs")),
    "fig7_screen": (figure_screen, ("screen_sublayers", "screen_verdicts")),
    "fig8_wasserstein": (figure_wasserstein, ("wasserstein", "runs")),
    "fig9_inspect": (figure_inspect, ("inspected",)),
    "fig10_real_models": (figure_real_models, ("inspected_stream", "inspected", "probes", "bounds", "runs")),
}

# the claims (lnstab.claims) whose evidence a figure draws: its report caption states their
# verdicts with the numbers behind them (claims.csv), so the caption carries what the figure shows
FIGURE_CLAIMS = {
    "fig1_moments": ("pre_above_peri_trained", "wd_limits_pre", "small_dt_limits_trained_pre"),
    "fig2_depth": ("peri_depth_at_most_linear", "pre_depth_faster_than_linear"),
    "fig3_backward": ("small_dt_uniform_adjoints", "small_dt_uniform_grad_spread"),
    "fig4_losses": ("peri_loss_competitive",),
    "fig6_scale": ("pre_scale_grows_after_warmup", "pre_scale_grows_more_than_peri"),
}


def _rst_text(text: str) -> str:
    """Plain text safe inside reStructuredText (``|x|`` would be a substitution, ``*`` emphasis)."""
    for ch in "\\|*`_":
        text = text.replace(ch, "\\" + ch)
    return text


def caption_claims(claims: pd.DataFrame, figure: str) -> str:
    """The verdict and numbers of each claim ``figure`` shows, as a reStructuredText bullet list
    for its report caption ('' for a figure that shows none)."""
    shown = claims[claims["claim"].isin(FIGURE_CLAIMS.get(figure, ()))]
    condition = shown["condition"] if "condition" in shown else pd.Series("all", index=shown.index)
    lines = [f"- {_rst_text(r.claim)}{'' if c == 'all' else ' at ' + _rst_text(c)}: **{r.verdict}**. "
             f"{_rst_text(str(r.numbers))}" for r, c in zip(shown.itertuples(), condition)]
    return ("\n\nThis study's verdicts (results/tables/claims.csv):\n\n" + "\n".join(lines)) if lines else ""


def make_figure(name: str, tables: dict[str, str | Path], out_stem, style=None) -> list[Path]:
    """One figure of FIGURES from its tables {name: file}, in ``style`` (an mplstyle file; default
    lnstab's), as PNG and PDF."""
    use_style(style)
    fn, inputs = FIGURES[name]
    frames = {t: read_table(tables[t]) for t in inputs}
    try:
        figure = fn(**frames)
    except KeyError as e:  # a table without a column the figure draws
        raise ValueError(f"{name}: a column of its tables is missing: {e} (tables: "
                         f"{', '.join(str(tables[t]) for t in inputs)}); rebuild them") from None
    return save(figure, out_stem)
