# Stage 5: the written report (Markdown), the sha256 manifest of tables and figures, and the
# inputs of `snakemake --report report.zip` (figures and tables are flagged where made).


rule report:
    localrule: True
    input:
        claims=f"{RESULTS}/tables/claims.csv",
        runs=f"{RESULTS}/tables/runs.csv",
        growth=f"{RESULTS}/tables/growth.csv",
        figures=FIGURE_FILES,
    output:
        report(f"{RESULTS}/report.md", caption="../report/report_md.rst", category="Report",
               labels={"document": "written report"}),
    log:
        f"{LOGS}/report.log",
    params:
        figdir=lambda wc, input: os.path.dirname(input.figures[0]),
    conda:
        CONDA_ENV
    script:
        "../scripts/write_report.py"


rule manifest:
    localrule: True
    input:
        TABLE_FILES,
        FIGURE_FILES,
        f"{RESULTS}/report.md",
    output:
        f"{RESULTS}/manifest.sha256",
    log:
        f"{LOGS}/manifest.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/write_manifest.py"

