# Stage 5: the one-page summary (Markdown), the sha256 manifest of tables and figures, and the
# inputs of `snakemake --report report.zip` (figures and tables are flagged where made).


rule summary:
    input:
        tables=table_files(RESULTS, SUMMARY_INPUTS),
        figures=FIGURE_FILES,
        # the committed claims of the other studies, cited where this one does not decide a claim
        cited=[
            f"{d}/tables/claims.csv"
            for d in CITED_STUDIES
            if d != RESULTS and os.path.exists(f"{d}/tables/claims.csv")
        ],
    output:
        f"{RESULTS}/summary.md",
        # the same page as HTML: shown in the report itself
        report(
            f"{RESULTS}/summary.html",
            caption="../report/summary_md.rst",
            category="Summary",
            labels={"document": "one-page summary"},
        ),
    log:
        f"{LOGS}/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        config=config,
        tables=lambda wc, input: os.path.dirname(input.tables[0]),
        figdir=lambda wc, input: os.path.dirname(input.figures[0]),
    script:
        "../scripts/write_summary.py"


rule manifest:
    input:
        # every table but the wall-clock one: the manifest is what a rerun must reproduce
        [f for f in TABLE_FILES if os.path.basename(f) != "timings.csv"],
        FIGURE_FILES,
        f"{RESULTS}/summary.md",
        f"{RESULTS}/summary.html",
    output:
        f"{RESULTS}/manifest.sha256",
    log:
        f"{LOGS}/manifest.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/write_manifest.py"
