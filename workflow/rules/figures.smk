# Stage 4: one rule per figure, each drawn from tables only (lnstab.figures).
FIGURE_TABLES = {
    "fig1_moments": ["probes", "bounds", "runs"],
    "fig2_growth": ["probes", "growth", "runs"],
    "fig3_backward": ["probes", "runs"],
    "fig4_losses": ["metrics", "runs"],
    "fig5_tightness": ["bounds", "runs"],
}

for _fig, _tables in FIGURE_TABLES.items():

    rule:
        name:
            _fig
        localrule: True
        input:
            **{t: f"{RESULTS}/tables/{t}.csv" for t in _tables},
        output:
            png=report(
                f"{FIGDIR}/{_fig}.png",
                caption=f"../report/{_fig}.rst",
                category="Figures",
                labels={"figure": _fig.split("_", 1)[1], "placement": "all", "depth": "see caption", "dt": "all"},
            ),
            pdf=f"{FIGDIR}/{_fig}.pdf",
        log:
            f"{LOGS}/figures/{_fig}.log",
        params:
            figure=_fig,
        conda:
            CONDA_ENV
        script:
            "../scripts/make_figure.py"


rule figures:
    localrule: True
    input:
        FIGURE_FILES,
