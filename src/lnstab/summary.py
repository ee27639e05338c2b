"""results/summary.md: the study on one page, for a reviewer, generated from the tables."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .tables import SHOWN_COLUMNS, _shown

# each figure of the study and the figure of the paper (arXiv 2510.09904) it mirrors
FIGURE_MAP = {
    "fig1_moments": "Figure 1: moments of the hidden states over the layers of a trained model, with the bounds",
    "fig2_depth": "the depth statements (growth of the hidden states with the number of layers)",
    "fig3_backward": "the backward-stability statements (adjoints and gradients over depth)",
    "fig4_losses": "the claim that Peri-LN trains competitively (no loss figure of the paper's is reproduced)",
    "fig5_tightness": "none: how much of this package's bounds the trained models use",
    "fig6_scale": "Figure 1's message that scale grows during training for Pre-LN (scale over steps)",
    "fig7_screen": "the paper's offer of its analysis as a sanity check of new blocks (no figure of the paper's)",
    "fig8_wasserstein": "the uncertainty-quantification section (Wasserstein sensitivity of the flow)",
    "fig9_inspect": "Figure 1's layout for checkpoints measured by `lnstab inspect` (the study's own export, "
                    "and the pretrained models of `inspect.models`)",
    "fig10_real_models": "Figure 1 on real trained Transformers (SmolLM2, Gemma 3, MiniLM) beside this study's "
                         "models, relative to the embeddings",
}

CAVEAT = ("The bounds are this package's own derivations (docs/bounds.md), not the paper's theorems, "
          "which were not available to us; a measured value above a bound would be a bug in this "
          "package. Only rows that can fail are counted as checks (docs/bounds.md, 'What is a check').")


def _config_paragraph(config: dict, runs: pd.DataFrame) -> str:
    b = config.get("base", {})
    m, t = b.get("model", {}), b.get("train", {})
    demos = runs[runs["role"] != "study"]
    study = (f"{len(runs)} runs: placements {', '.join(sorted(runs['placement'].unique()))}; "
             f"depths {', '.join(str(d) for d in sorted(runs['n_layer'].unique()))} blocks; "
             f"dt {', '.join(f'{v:g}' for v in sorted(runs['dt'].unique(), reverse=True))}; "
             f"weight decay {', '.join(f'{v:g}' for v in sorted(runs['weight_decay'].unique()))}; "
             f"learning rates {', '.join(f'{v:g}' for v in sorted(runs['lr'].unique()))}; "
             f"seeds {', '.join(str(s) for s in sorted(runs['seed'].unique()))}. "
             f"Models of width {m.get('d_model', '?')} with {m.get('n_head', '?')} heads and context "
             f"{m.get('block_size', '?')}, trained {t.get('steps', '?')} steps of batch {t.get('batch_size', '?')} "
             f"on the {b.get('data', {}).get('source', 'shakespeare')} corpus.")
    if len(demos):
        labels = sorted(set(demos["placement"] + " lr=" + demos["lr"].map("{:g}".format)))
        study += (f" {len(demos)} run(s) are declared instability demonstrations ({', '.join(labels)}) "
                  "and are not expected to learn.")
    return study


def study_file(config: dict) -> str:
    """The config file of the study a summary is about, from its results folder."""
    results = str(config.get("results", "results")).rstrip("/")
    return "config/config.yaml" if results == "results" else f"config/{os.path.basename(results)}.yaml"


def _named(r) -> str:
    """A claim's name with its condition, where it is split."""
    condition = getattr(r, "condition", "all")
    return f"`{r.claim}`" + ("" if condition in ("all", None) or condition != condition else f" at {condition}")


OPEN = ("undecided", "untested")  # a refuted or mixed claim is decided, if not as the paper says


def _undecided(claims: pd.DataFrame, config: dict) -> list[str]:
    """Per claim this study leaves open (undecided or untested): its numbers and a study that
    would decide it (never this one)."""
    from .claims import CLAIMS

    here = study_file(config)
    rows = claims[claims["verdict"].isin(OPEN)]
    if rows.empty:
        return ["This study decides every claim (the verdicts above)."]
    out = []
    for r in rows.itertuples():
        others = [s for s in CLAIMS[r.claim].decided_by if not s.startswith(here)] if r.claim in CLAIMS else []
        where = f" Deciding it needs {others[0]}." if others else " No study of this package is larger."
        out.append(f"- {_named(r)}: {r.verdict} (effect {_num(r.effect)} [{_num(r.ci_low)}, {_num(r.ci_high)}] over "
                   f"{r.seeds} seed(s); {r.holds}/{r.checked} comparisons).{where}")
    return out


def _elsewhere(claims: pd.DataFrame, others: dict[str, pd.DataFrame]) -> list[str]:
    """The verdicts other studies' committed claims tables give to the claims left open here."""
    key = lambda t: list(zip(t["claim"], t["condition"] if "condition" in t else ["all"] * len(t)))  # noqa: E731
    open_here = set(key(claims[claims["verdict"].isin(OPEN)]))
    lines = []
    for study, table in sorted(others.items()):
        here = pd.Series([k in open_here for k in key(table)], index=table.index, dtype=bool)
        for r in table[here & (table["verdict"] != "untested")].itertuples():
            effect = (f"effect {_num(r.effect)} [{_num(r.ci_low)}, {_num(r.ci_high)}] over {r.seeds} seed(s)"
                      if hasattr(r, "effect") else f"{r.holds}/{r.checked}, a table older than effects and intervals")
            lines.append(f"- {_named(r)} in {study}: {r.verdict} ({effect}): {r.numbers}")
    if not lines:
        return []
    return ["### What the other committed studies say of them", "", *lines, ""]


def _num(v) -> str:
    return "" if v != v else f"{v:.3g}"


def _apart(tables: dict[str, pd.DataFrame]) -> list[str]:
    """Demonstrations and software checks: reported, never claims."""
    d, sw, ab = tables["demonstrations"], tables["software_checks"], tables["dt_ablation"]
    out = ["### Instability demonstrations (declared, not claims)", ""]
    if d.empty:
        out.append("This study declares no instability demonstration.")
    else:
        out += [f"{int(d['demonstrated'].sum())} of {len(d)} runs showed what they were declared to "
                f"({d['criterion'].iloc[0]}):", "",
                d[[c for c in SHOWN_COLUMNS["demonstrations"] if c in d]].astype(object).map(_shown)
                .to_markdown(index=False)]
    out += ["", "### Software checks (regression tests of this package's bounds, not claims)", "",
            sw[SHOWN_COLUMNS["software_checks"]].astype(object).map(_shown).to_markdown(index=False), ""]
    if not ab.empty:
        out += ["### dt under AdamW: the ablation (docs/theory.md)", "",
                "dt as the step against dt folded into the branches' last maps (the same training up to "
                "gradient clipping) and dt = 1 with only the last maps' init scaled; mean over learned seeds:", "",
                ab.drop(columns=["fold_dt"]).to_markdown(index=False, floatfmt=".4g"), ""]
    return out


def _screen_against_claim(v: pd.DataFrame, claims: pd.DataFrame) -> list[str]:
    """The Pre-LN reference's depth exponent beside the study's pre_depth_faster_than_linear: one
    statistic and one fit (stats.depth_exponent), so they agree or the line says what differs."""
    ref = v[(v["architecture"] == "pre") & (v["role"] == "reference")]
    c = claims[(claims["claim"] == "pre_depth_faster_than_linear") & claims["effect"].notna()]
    if ref.empty or c.empty or not np.isfinite(ref["depth_exponent"].iloc[0]):
        return []
    r, c = ref.iloc[0], c.iloc[0]
    screen_side, study_side = r["depth_exponent"] > 1, c["effect"] > 1
    how = ("they agree: both " + ("above" if study_side else "at most") + " 1" if screen_side == study_side else
           "they disagree: the screen's depths are smaller and its training shorter, and the study's "
           "interval decides its claim")
    return ["", f"The same statistic and fit as the claims (top-of-stream mean|x| ~ L^a): the Pre-LN "
                f"reference's a = {r['depth_exponent']:.2f} over depths {r['depths']} after the screen's "
                f"training (lr {_shown(r['best_lr'])}), the study's `pre_depth_faster_than_linear` "
                f"a = {c['effect']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}] ({c['verdict']}); {how}."]


def _screen(verdicts: pd.DataFrame, claims: pd.DataFrame) -> list[str]:
    v = verdicts[verdicts["state"] == "trained"]
    cols = ["architecture", "role", "forward", "backward", "depth_exponent", "step_factor", "adjoint_step_factor",
            "weight_homogeneity", "best_lr", "final_val_loss", "learned", "per_lr"]
    return ["Verdicts after the screen's short training (`lnstab screen`: three depths, each learning rate fitted "
            "across depths apart; the verdict of the rate that learns at every depth, the others in `per_lr`; thresholds in docs/screen.md; at initialisation and every trial in "
            "results/tables/screen_verdicts.md). Forward: the depth exponent a of the top-of-stream mean|x| "
            "~ L^a (the claims' statistic) and the per-sub-layer growth factor between the two largest depths; backward: the "
            "per-sub-layer adjoint factor (||p0||/||pK||)^(1/K); `weight_homogeneity` is a property of the "
            "branch, not a verdict. `learned`: validation loss below the corpus's bigram baseline; the "
            "verdicts of a model that did not learn are about an untrained model:", "",
            v[cols].astype(object).map(_shown).to_markdown(index=False), *_screen_against_claim(v, claims)]


def last_maps(r) -> str:
    """How a run's branch last maps were set: default, init scaled, or dt folded into them."""
    if getattr(r, "fold_dt", False):
        return "dt folded"
    scale = getattr(r, "init_scale", 1.0)
    return "default" if scale == 1 else f"init x{scale:g}"


def _wasserstein(w: pd.DataFrame) -> list[str]:
    w = w[w["learned"].astype(bool)]
    if "init_scale" in w:  # the default last maps: the ablation and tuning variants are in the table
        w = w[(w["init_scale"] == 1) & ~w["fold_dt"].astype(bool)]
    if w.empty:
        return ["No run learned; results/tables/wasserstein.md has the flows of those that did not."]
    L = int(w["n_layer"].max())
    w = w[w["n_layer"] == L]
    keys = ["placement", "dt", "weight_decay"]
    noise = w[w["noise_scale"].notna()].groupby(keys)["ratio"].median().rename("ratio, noise (median)")
    other = w[w["noise_scale"].isna()].groupby(keys)["ratio"].median().rename("ratio, other slice")
    rms = w.groupby(keys)["rms_gain"].median().rename("flow Jacobian, random-direction gain")
    worst = w.groupby(keys)["worst_gain"].median().rename("flow Jacobian, worst-direction gain")
    table = pd.concat([noise, other, rms, worst], axis=1).reset_index()
    return [f"W_2 ratio output / input of the flow x^(0) -> x^(K), learned {L}-block models, median over "
            "seeds and noise scales (exact OT; results/tables/wasserstein.md), next to the measured gains of "
            "the flow's Jacobian over a sequence (exact, dense): ||J||_F / sqrt(T d), what a random direction "
            "sees, and ||J||_2, the worst direction:", "",
            table.to_markdown(index=False, floatfmt=".3g")]


def _inspected(models: pd.DataFrame) -> list[str]:
    """The inspected checkpoints: what was detected, the checks, and the round trip of an export."""
    out = ["Checkpoints measured as a training run's final probe (`lnstab inspect`; rows in "
           "results/tables/inspected.csv). `bounds`: which bound of docs/bounds.md the model's rows check, or "
           "why it has none. `dim_max_over_median`: the largest dimension's max |x| over the "
           "median dimension's, at the layer where it is largest (massive activations). `roundtrip_max_abs_diff`: "
           "for a run of this study exported to transformers' format, the largest difference between the "
           "inspected rows and the run's own final probe (0: the export and the inspection are exact):", "",
           models[[c for c in SHOWN_COLUMNS["inspected_models"] if c in models]].astype(object).map(_shown)
           .to_markdown(index=False)]
    return out


def _f(v, fmt=".3g") -> str:
    return "-" if v is None or v != v else format(v, fmt)


def _real_models(real: pd.DataFrame, quant: pd.DataFrame) -> list[str]:
    """The real trained Transformers: one paragraph of numbers per model, the quantisation effect,
    and what comparing them can and cannot show."""
    out = ["Three trained Transformers that installed packages carry, one per placement, measured by "
           "`lnstab inspect` on windows of the corpus's validation split (each window also behind the model's "
           "BOS token: the two groups are reported apart in results/tables/inspected_depth.md). Depth exponent: "
           "a of mean|x^(k)| ~ k^a along the model's own stream (k = 1..K), with its 95% interval over the "
           "sequences; the verdict's words are the screen's (docs/screen.md). Losses in nats per token, next to "
           "the unigram entropy of the same target tokens (the best context-free model fitted on them).", ""]
    for r in real.itertuples(index=False):
        loss = ("an encoder: no next-token loss (the adjoints are those of a fixed random functional of its "
                "mean-pooled output)" if r.loss_corpus_bos != r.loss_corpus_bos else
                f"loss on the corpus {_f(r.loss_corpus_bos)} behind BOS and {_f(r.loss_corpus_no_bos)} without "
                f"(unigram {_f(r.unigram_corpus)}), on CPython's licence {_f(r.loss_licence_bos)} and "
                f"{_f(r.loss_licence_no_bos)} (unigram {_f(r.unigram_licence)})")
        bound = (f"Largest measured/bound {_f(r.max_ratio)} over {r.bound_checks} checks, "
                 f"{r.bound_violations} violations" if r.bound_checks else
                 "Its bound rows restate the normalisation (Post-LN: not counted as checks)" if r.placement == "post"
                 else "No bound proven for its attention and MLP (docs/bounds.md, 'Real models')")
        where = (f"at x^({r.massive_sublayer}), position {r.massive_position} of its sequence, token id "
                 f"{r.massive_token}, dimension {r.massive_dim}")
        sums = (f"; on the sums before its LayerNorms the same ratio reaches {_f(r.massive_ratio_sum, '.0f')}"
                if r.massive_ratio_sum == r.massive_ratio_sum and r.massive_ratio_sum is not None else "")
        q = quant[(quant["quantity"] == "mean_abs") & (quant["name"] == r.name)]
        out += [f"- **{r.name}** ({r.placement}-LN, {r.norm}, {r.n_layer} layers x {r.d_model}, "
                f"{r.n_params / 1e6:.0f} M parameters, stored as {r.quantisation}; licence {r.licence}): {loss}. "
                f"Depth exponent {_f(r.depth_exponent)} [{_f(r.depth_exponent_low)}, {_f(r.depth_exponent_high)}]: "
                f"{r.forward}; adjoint factor per sub-layer {_f(r.adjoint_step, '.3f')}: {r.backward}. {bound}. "
                f"Massive activation: largest dimension {_f(r.massive_ratio, '.0f')}x the median one, {where}{sums}. "
                f"The gains of the norms that set a sub-layer's size grow {_f(r.gain_growth)}x from the first layer "
                f"to the last."]
    if len(quant):
        moments = quant[quant["quantity"].isin(["mean_abs", "var_entry", "var_data", "mean_norm"])]
        q = moments.groupby(["name", "format", "tensors"])["max_rel_change"].max().reset_index()
        adj = quant[quant["quantity"] == "adjoint_norm"].set_index(["name", "format"])["max_rel_change"]
        q["adjoint_norm"] = [adj.get((n, f)) for n, f in zip(q["name"], q["format"])]
        q = q.rename(columns={"max_rel_change": "moments: largest relative change",
                              "adjoint_norm": "adjoint: largest relative change"})
        out += ["", "Quantisation is a change of weights. Its size, measured on the float32 model with its "
                "matrices round-tripped through each format (every point, group and moment; "
                "results/tables/inspected_quantisation.md), is the uncertainty to read next to the GGUF models' "
                "numbers (SmolLM2: Q4_1; Gemma 3: Q5_0, Q4_K, Q6_K, Q8_0):", "",
                q.to_markdown(index=False, floatfmt=".3g")]
    out += ["", "What comparing these models can show: for each, whether its own stream grows faster than "
            "linearly along its depth, where its massive activations sit, that this package's bounds hold on its "
            "weights. What it cannot: that the placement causes a difference between them. They differ in size "
            "(6 to 30 layers, 22 M to 268 M parameters), data, tokenizer, training recipe and objective (MiniLM "
            "is an encoder trained for sentence embeddings), and Gemma's output-norm gains are themselves "
            "trained; one model per placement is one sample, not a comparison of placements."]
    return out


def real_models_markdown(real: pd.DataFrame, quant: pd.DataFrame) -> str:
    """The README's table of the real models, from inspected_real and inspected_quantisation (a
    test checks that the README holds exactly this)."""
    moments = quant[quant["quantity"].isin(["mean_abs", "var_entry", "var_data", "mean_norm"])]
    q = moments.groupby("format")["max_rel_change"].max()
    rows = []
    for r in real.itertuples(index=False):
        fmt = "Q4_1" if "Q4_1" in r.quantisation else "Q4_K" if "Q4_K" in r.quantisation else None
        loss = ("encoder" if r.loss_corpus_bos != r.loss_corpus_bos else
                f"{_f(r.loss_corpus_bos)} / {_f(r.loss_corpus_no_bos)} ({_f(r.unigram_corpus)})")
        checks = (f"{_f(r.max_ratio, '.2f')} ({r.bound_checks}, {r.bound_violations} violations)" if r.bound_checks
                  else "normalisation only" if r.placement == "post" else "none proven")
        rows.append({
            "model": f"{r.name} ({r.placement}-LN, {r.n_layer} x {r.d_model}, {r.n_params / 1e6:.0f} M)",
            "loss, corpus: BOS / no BOS (unigram)": loss,
            "depth exponent [95%]": f"{_f(r.depth_exponent, '.2f')} [{_f(r.depth_exponent_low, '.2f')}, "
                                    f"{_f(r.depth_exponent_high, '.2f')}]: {r.forward}",
            "adjoint factor": f"{_f(r.adjoint_step, '.3f')}: {r.backward}",
            "largest measured/bound (checks)": checks,
            "massive activation": f"{_f(r.massive_ratio, '.0f')}x at x^({r.massive_sublayer}), position "
                                  f"{r.massive_position}" + (f"; {_f(r.massive_ratio_sum, '.0f')}x on the sums"
                                                             if r.massive_ratio_sum == r.massive_ratio_sum
                                                             and r.massive_ratio_sum is not None else ""),
            "gain growth": _f(r.gain_growth, '.2f'),
            "quantisation effect (MiniLM, same format)": f"{fmt}: {q[fmt]:.1%}" if fmt in q.index else "-"})
    return pd.DataFrame(rows).to_markdown(index=False)


def summary_markdown(tables: dict[str, pd.DataFrame], config: dict, figdir: str,
                     others: dict[str, pd.DataFrame] | None = None) -> str:
    """The page; ``others``: study summary path -> that study's claims table (cited where this
    study does not decide a claim)."""
    runs, base, losses, claims = (tables[k] for k in ("runs", "baselines", "losses", "claims"))
    study = runs[runs["role"] == "study"]
    learned = int(study["learned"].sum())
    lt = losses.copy()
    lt["val loss"] = ["no finite loss" if m != m else (f"{m:.3f} ± {s:.3f}" if s == s else f"{m:.3f}")
                      for m, s in zip(lt["val_loss_mean"], lt["val_loss_std"])]
    lt["learned"] = lt["learned"].astype(str) + "/" + lt["seeds"].astype(str)
    lt["last maps"] = [last_maps(r) for r in lt.itertuples()]
    lt = lt[["placement", "n_layer", "dt", "weight_decay", "lr", "last maps", "role", "val loss", "learned"]]
    cl = claims[["claim", "condition", "verdict", "effect", "ci_low", "ci_high", "seeds", "holds", "checked",
                 "numbers"]]
    parts = [
        "# lnstab study summary",
        "",
        "Reproduction at small scale of *Stability of Transformers under Layer Normalization* "
        "(Kan et al., arXiv 2510.09904).",
        "",
        "## The study",
        "",
        _config_paragraph(config, runs),
        "",
        f"Runs that learned (final validation loss below the bigram baseline): {learned} of {len(study)} "
        f"study runs; claims are judged on those only.",
        "",
        "## Baselines (validation split, nats per token, add-one smoothed counts of the training split)",
        "",
        base[["corpus", "tokenizer", "tokens", "unigram_nats", "bigram_nats"]].to_markdown(index=False, floatfmt=".4f"),
        "",
        "## Final validation loss (mean ± standard deviation over seeds)",
        "",
        lt.to_markdown(index=False, floatfmt="g"),
        "",
        "## Claims",
        "",
        "Effect: mean over seeds with its 95% interval over seeds (what each effect is and its reference "
        "point: claims.csv, column effect_is; docs/claims.md). Verdicts: supported (interval on the claimed "
        "side, every comparison holds), mixed (on the claimed side over seeds; holds/checked says how many "
        "comparisons), refuted, undecided (within seed noise), untested. A claim the data decide differently at "
        "two values of a grid key is judged at each apart (condition).",
        "",
        cl.astype(object).map(_shown).to_markdown(index=False),
        "",
        "## Where this study does not decide a claim",
        "",
        *_undecided(claims, config),
        "",
        *_elsewhere(claims, others or {}),
        *_apart(tables),
        "",
        "## Screening a block before training it",
        "",
        *(_screen(tables["screen_verdicts"], claims) if "screen_verdicts" in tables else
          ["This study does not screen (`screen.enabled: false`): its screen would repeat the default "
           "study's (results/summary.md, results/tables/screen_verdicts.md)."]),
        "",
        "## Wasserstein sensitivity of the trained flow",
        "",
        *(_wasserstein(tables["wasserstein"]) if "wasserstein" in tables else
          ["This study has no Wasserstein stage (`wasserstein.enabled: false`); the default study's is in "
           "results/summary.md and results/tables/wasserstein.md."]),
        "",
        *(["## Real models", "", *_real_models(tables["inspected_real"], tables["inspected_quantisation"]), ""]
          if "inspected_real" in tables and len(tables["inspected_real"]) else []),
        *(["## Inspected checkpoints", "", *_inspected(tables["inspected_models"]), ""]
          if "inspected_models" in tables else []),
        "## Figures and the paper's figures they mirror",
        "",
        *[f"- [{name}]({figdir}/{name}.png): {what}" for name, what in FIGURE_MAP.items()
          if {"fig7_screen": "screen_verdicts", "fig8_wasserstein": "wasserstein",
              "fig9_inspect": "inspected_models", "fig10_real_models": "inspected_real"}.get(name, "runs") in tables],
        "",
        "## Caveat",
        "",
        CAVEAT,
        "",
    ]
    return "\n".join(parts)


SUMMARY_CSS = ("body{font-family:sans-serif;max-width:70em;margin:1em auto;line-height:1.4}"
               "table{border-collapse:collapse;margin:0.5em 0;font-size:90%}"
               "th,td{border:1px solid #ccc;padding:2px 6px}td{text-align:right}")


def summary_html(markdown: str) -> str:
    """The summary as one self-contained HTML page (the report shows it inline; Markdown is a
    download there). CommonMark with tables (markdown-it-py); no time stamp, so it is as
    deterministic as the Markdown."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>lnstab study summary</title>'
            f"<style>{SUMMARY_CSS}</style></head>\n<body>\n{body}</body></html>\n")
