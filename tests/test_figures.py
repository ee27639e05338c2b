"""Every figure of FIGURES drawn from the tables of a tiny study: one hue per placement, variants
named in one legend, the baselines and bounds where the figure promises them."""
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT
from lnstab.collect import collect
from lnstab.figures import FIGURES, PLACEMENT_COLORS, pyplot, save
from lnstab.pretrained import inspect, inspect_run, inspection_tables
from lnstab.pretrained.tables import real_model_tables
from lnstab.screen import screen, screen_config
from lnstab.study import prepare_corpus, run_wasserstein, train_grid_point, wasserstein_table


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny_study")
    meta = tmp / "data" / "meta.json"
    prepare_corpus({"source": "shakespeare"}, tmp / "data", meta, tmp / "baselines")
    base = {"model": {"d_model": 16, "n_head": 2, "block_size": 16},
            "train": {"steps": 6, "batch_size": 2, "warmup_steps": 1, "eval_interval": 3, "ckpt_interval": 0,
                      "log_interval": 3, "eval_batches": 1},
            "probe": {"interval": 3, "batch_size": 2, "jacobian_iters": 2}}
    grid = {}
    for placement in ("pre", "peri", "post"):
        for dt in (1.0, 0.1):
            p = {"placement": placement, "n_layer": 2, "dt": dt, "weight_decay": 0.1, "lr": 0.003, "seed": 0,
                 "role": "study"}
            rid = f"{placement}-{dt}"
            train_grid_point(p, base, meta, tmp / rid)
            grid[rid] = p
    baselines = pd.read_csv(tmp / "baselines.csv")
    out = collect({r: tmp / r for r in grid}, grid, baselines)
    # pretend every run learned, so that every figure draws every run as a trained one
    out["runs"]["learned"] = True
    out["baselines"] = baselines
    out["runs"].to_csv(tmp / "runs.csv", index=False)
    for r in grid:
        run_wasserstein(tmp / r, meta, tmp / r / "wasserstein.csv", sequences=2)
    out["wasserstein"] = wasserstein_table([tmp / r / "wasserstein.csv" for r in grid], tmp / "runs.csv",
                                           tmp / "wasserstein")
    small = ["model.placement=output", "model.norm=rmsnorm", "model.n_layer=4", "model.d_model=16",
             "model.n_head=2", "model.block_size=16", "train.steps=4", "train.batch_size=2",
             "train.warmup_steps=1", "train.eval_interval=2", "probe.batch_size=2", "probe.jacobian_iters=2"]
    screened = screen(screen_config(None, small), tmp / "screen", verbose=False)
    out["screen_sublayers"], out["screen_verdicts"] = screened["sublayers"], screened["verdicts"]
    # the Pre-LN run at dt 1 exported to transformers' GPT-2 and inspected (lnstab inspect)
    inspect_run(tmp / "pre-1.0", meta, tmp / "inspect" / "export-pre-1.0")
    # and one tiny trained-looking model of each real family (lnstab inspect through hooks)
    folders = {"export-pre-1.0": tmp / "inspect" / "export-pre-1.0"}
    for name, (cfg_cls, model_cls) in {"llama-tiny": ("LlamaConfig", "LlamaForCausalLM"),
                                       "gemma-tiny": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
                                       "bert-tiny": ("BertConfig", "BertModel")}.items():
        transformers = pytest.importorskip("transformers")
        torch.manual_seed(0)
        kwargs = dict(vocab_size=50257, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, max_position_embeddings=32)
        if "Bert" not in cfg_cls:
            kwargs.update(num_key_value_heads=1, head_dim=8)
        getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**kwargs)).save_pretrained(tmp / name)
        inspect(tmp / name, tmp / "inspect" / name, tokens=8, batch=2, verbose=False)
        folders[name] = tmp / "inspect" / name
    out["inspected"], _ = inspection_tables(folders)
    out.update(real_model_tables(folders))
    return out


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_draws_from_tables(tables, name, tmp_path):
    fn, inputs = FIGURES[name]
    fig = fn(**{t: tables[t] for t in inputs})
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert labels, "one legend for the figure"
    placements = {lab.split()[0] for lab in labels if lab.split()[0] in PLACEMENT_COLORS}
    # Post-LN's bound rows restate LN's normalisation: never in the tightness figure
    drawn = {"pre", "peri"} if name == "fig5_tightness" else {"pre", "peri", "post"}
    if name == "fig7_screen":  # the screened candidate and the three references
        drawn = {"output", "pre", "peri", "post"}
    if name == "fig9_inspect":  # the inspected export of the Pre-LN run and the tiny real families
        drawn = {"pre", "peri", "post"}
    assert placements == drawn
    # every line of a placement in a shade of the placement's hue (darker or lighter: one hue)
    import colorsys

    import matplotlib.colors as mcolors

    def hue(c):
        r, g, b = mcolors.to_rgb(c)
        return colorsys.rgb_to_hsv(r, g, b)[0]

    lines = [(line.get_label().split(" ")[0], line.get_color(), line.get_label()) for ax in fig.axes
             for line in ax.get_lines() if line.get_label().split(" ")[0] in PLACEMENT_COLORS]
    assert {p for p, _, _ in lines} >= drawn
    for p, c, label in lines:
        if "(candidate)" in label:  # the screened block: black, whatever its placement
            assert mcolors.to_hex(c) == "#000000", (label, c)
        elif p != "deepnorm":  # black: no hue
            assert abs(hue(c) - hue(PLACEMENT_COLORS[p])) < 0.02, (p, c)
    if name == "fig1_moments":
        assert "dashed: the run's proven bound" in labels
        assert [ax.get_title() for ax in fig.axes[:3]] == ["mean $|x|$", "entry-wise variance", "data-wise variance"]
        # each run's legend entry holds its line and its dashed bound, in the run's colour
        legend = fig.legends[0]
        assert len(legend.legend_handles) == len(labels)
    if name == "fig10_real_models":  # each family's model beside the study's runs of its placement
        assert {"pre llama-tiny", "peri gemma-tiny", "post bert-tiny"} <= set(labels)
        assert [ax.get_title() for ax in fig.axes[:3]] == ["Pre-LN", "Peri-LN", "Post-LN"]
    if name == "fig8_wasserstein":
        assert fig.axes[0].get_ylabel() == "$W_2$ ratio, output / input"
        assert any(lab.startswith("dashed: the flow Jacobian's random-direction gain") for lab in labels)
    if name == "fig4_losses":
        assert any(lab.startswith("bigram baseline") for lab in labels)
        assert any(lab.startswith("unigram baseline") for lab in labels)
    paths = save(fig, tmp_path / name)
    assert [p.read_bytes()[:4] for p in paths] == [b"\x89PNG", b"%PDF"]
    pyplot().close("all")


def test_committed_figures_redraw_from_committed_tables(tmp_path, monkeypatch):
    """make figures in a clone: every committed figure and the summary, drawn again from the
    committed tables alone (no training, no Snakemake), byte-identical to the committed files."""
    from conftest import ROOT
    from lnstab.study import redraw

    monkeypatch.chdir(ROOT)
    written = redraw("config/config.yaml", into=tmp_path, verbose=False)
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == len(list((ROOT / "figures").glob("*.png"))) == len(FIGURES)
    for p in pngs:
        assert p.read_bytes() == (ROOT / "figures" / p.name).read_bytes(), p.name
    for name in ("summary.md", "summary.html"):
        assert (tmp_path / "results" / name).read_text() == (ROOT / "results" / name).read_text(), name


def test_a_figures_caption_states_its_claims_in_safe_restructuredtext():
    """The report caption of a figure lists the verdict and numbers of each claim it shows; text
    such as |x| cannot become reStructuredText markup (a docutils error in the report)."""
    from docutils.core import publish_parts

    from lnstab.figures import FIGURE_CLAIMS, caption_claims

    claims = pd.DataFrame({"claim": ["pre_depth_faster_than_linear", "peri_depth_at_most_linear", "other"],
                           "verdict": ["refuted", "supported", "supported"],
                           "numbers": ["a median 0.58 [0.48, 0.65] of the top |x| *growth* of x_", "a 0.24", "x"]})
    text = caption_claims(claims, "fig2_depth")
    html = publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["body"]  # raises on markup errors
    assert "<strong>refuted</strong>" in html and "top |x| *growth* of x_" in html
    assert "other" not in text and set(FIGURE_CLAIMS["fig2_depth"]) <= set(claims["claim"])
    assert caption_claims(claims, "fig7_screen") == ""  # a figure that shows no claim


@pytest.mark.parametrize("damage, needle", [
    ("truncated_gz", "probes.csv.gz: not a readable table"),
    ("missing_column", "a column of its tables is missing: 'role'"),
    ("not_a_number", "runs.csv: row 3, column 'final_val_loss': 'abc' is not a number"),
    ("cut_mid_row", "runs.csv: not a readable table (its last row has no line end"),
])
def test_figures_from_damaged_tables_stop_with_one_line_naming_the_file(tmp_path, damage, needle):
    """`lnstab figures` on a copy of the committed tables with one of them damaged: exit 2 and one
    line naming the table, never a traceback or a figure drawn from it."""
    import shutil
    import subprocess
    import sys

    shutil.copytree(ROOT / "results" / "tables", tmp_path / "results" / "tables")
    study = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    study.update(results=str(tmp_path / "results"), figures=str(tmp_path / "figures"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(study))
    tables = tmp_path / "results" / "tables"
    runs = (tables / "runs.csv").read_text()
    if damage == "truncated_gz":
        data = (tables / "probes.csv.gz").read_bytes()
        (tables / "probes.csv.gz").write_bytes(data[: len(data) // 2])
    elif damage == "missing_column":
        df = pd.read_csv(tables / "runs.csv")
        df.drop(columns=["role"]).to_csv(tables / "runs.csv", index=False)
    elif damage == "not_a_number":
        df = pd.read_csv(tables / "runs.csv")
        df["final_val_loss"] = df["final_val_loss"].astype(object)
        df.loc[1, "final_val_loss"] = "abc"
        df.to_csv(tables / "runs.csv", index=False)
    else:
        (tables / "runs.csv").write_text(runs[: len(runs) - len(runs.splitlines()[-1]) // 2 - 1])
    res = subprocess.run([sys.executable, "-m", "lnstab", "figures", str(tmp_path / "config.yaml")],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


def test_a_variant_looks_the_same_in_every_figure(monkeypatch):
    """Every figure drawn from the committed tables: a variant's lines carry one colour and one
    marker wherever it appears (the style comes from the study's variants, not from the ones a
    figure happens to draw), and the figures drawn from the study show at least two variants."""
    import matplotlib.colors as mcolors

    from lnstab.figures import FIGURES, use_style
    from lnstab.io import read_table
    from lnstab.tables import data_file

    monkeypatch.chdir(ROOT)
    use_style(None)
    seen: dict[str, tuple[str, str, str]] = {}
    for name, (fn, inputs) in FIGURES.items():
        fig = fn(**{t: read_table(ROOT / "results" / "tables" / data_file(t)) for t in inputs})
        drawn = set()
        for ax in fig.axes:
            for line in ax.get_lines():
                label = line.get_label()
                if label.startswith("_") or line.get_marker() in (None, "None", ""):
                    continue
                variant = label.split(" (")[0]
                style = (mcolors.to_hex(line.get_color()), str(line.get_marker()))
                drawn.add(variant)
                first = seen.setdefault(variant, (*style, name))
                assert style == first[:2], f"{variant}: {style} in {name}, {first[:2]} in {first[2]}"
        pyplot().close(fig)
    assert sum(v.startswith(("pre ", "peri ", "post ")) for v in seen) >= 4, seen


def test_every_figure_is_readable_at_a_papers_text_width(monkeypatch, tmp_path):
    """Each figure, drawn from the committed tables and saved as the workflow saves it, shown at
    6.75 in (PAPER_WIDTH), keeps every text at 7 pt or more."""
    from matplotlib.text import Text
    from PIL import Image

    from lnstab.figures import FIGURES, PAPER_WIDTH, use_style
    from lnstab.io import read_table
    from lnstab.tables import data_file

    monkeypatch.chdir(ROOT)
    use_style(None)
    for name, (fn, inputs) in FIGURES.items():
        fig = fn(**{t: read_table(ROOT / "results" / "tables" / data_file(t)) for t in inputs})
        smallest = min(t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip())
        png = save(fig, tmp_path / name)[0]
        width = Image.open(png).size[0] / 150  # savefig.dpi of the style
        assert smallest * PAPER_WIDTH / width >= 7, (name, width, smallest)


def test_instability_demonstrations_have_facets_of_their_own(monkeypatch):
    """Post-LN's collapse spans 15 decades: in the figures that draw it (1, 3, 8) no panel holds
    both a demonstration and a study run, so it cannot set the scale of the comparisons."""
    from lnstab.figures import FIGURES, use_style
    from lnstab.io import read_table
    from lnstab.tables import data_file

    monkeypatch.chdir(ROOT)
    use_style(None)
    for name in ("fig1_moments", "fig3_backward", "fig8_wasserstein"):
        fn, inputs = FIGURES[name]
        fig = fn(**{t: read_table(ROOT / "results" / "tables" / data_file(t)) for t in inputs})
        kinds = [{"demo" if "instability demo" in line.get_label() else "study" for line in ax.get_lines()
                  if not line.get_label().startswith("_")} for ax in fig.axes]
        assert all(len(k) <= 1 for k in kinds), (name, kinds)
        assert any(k == {"demo"} for k in kinds) and any(k == {"study"} for k in kinds), (name, kinds)
        pyplot().close(fig)


def test_the_screened_candidate_shares_no_colour_or_marker_with_a_reference(monkeypatch):
    """Figure 7 from the committed screen tables: the candidate's lines differ from every
    reference's in colour and in marker (whatever placement the candidate uses)."""
    import matplotlib.colors as mcolors

    from lnstab.figures import FIGURES, use_style
    from lnstab.io import read_table
    from lnstab.tables import data_file

    monkeypatch.chdir(ROOT)
    use_style(None)
    fn, inputs = FIGURES["fig7_screen"]
    fig = fn(**{t: read_table(ROOT / "results" / "tables" / data_file(t)) for t in inputs})
    styles = {"candidate": set(), "reference": set()}
    for ax in fig.axes:
        for line in ax.get_lines():
            for role in styles:
                if f"({role})" in line.get_label():
                    styles[role].add((mcolors.to_hex(line.get_color()), line.get_marker()))
    pyplot().close(fig)
    assert styles["candidate"] and styles["reference"], styles
    colours, markers = ({s[i] for s in styles["reference"]} for i in (0, 1))
    assert all(c not in colours and m not in markers for c, m in styles["candidate"]), styles
