# Stage 4: one rule per figure, each drawn from tables only (lnstab.figures.FIGURES names the
# figures and the tables each reads). The figure code and the style file are inputs too: a
# change of either redraws (Snakemake's code trigger sees only the script).

for _fig, (_, _tables) in FIGURES.items():

    rule:
        name:
            _fig
        input:
            **{t: f"{RESULTS}/tables/{data_file(t)}" for t in _tables},
            # the claims whose verdicts and numbers its report caption states (FIGURE_CLAIMS)
            **(
                {"claims": f"{RESULTS}/tables/claims.csv"}
                if _fig in FIGURE_CLAIMS
                else {}
            ),
            code=FIGURE_CODE,
            style=FIGURE_STYLE,
        output:
            png=report(
                f"{FIGDIR}/{_fig}.png",
                caption=f"../report/{_fig}.rst",
                category="Figures",
                labels={
                    # "Figure 01 moments": the report sorts labels as text, so by number
                    "figure": f"Figure {int(_fig[3:].split('_')[0]):02d} {_fig.split('_', 1)[1]}",
                    "drawn from": ", ".join(_tables),
                },
            ),
            pdf=f"{FIGDIR}/{_fig}.pdf",
        log:
            f"{LOGS}/figures/{_fig}.log",
        localrule: True
        conda:
            CONDA_ENV
        params:
            figure=_fig,
            style=lambda wc, input: input.style,
            claims=claims_caption(_fig),
        script:
            "../scripts/make_figure.py"


rule figures:
    input:
        FIGURE_FILES,
    localrule: True
