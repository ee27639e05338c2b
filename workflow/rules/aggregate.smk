# Stage 3: every run folder into pandas tables, growth-law fits and the claims verdicts.


def table_outputs(name):
    """CSV (flagged for the HTML report), Markdown and LaTeX of one small table."""
    stem = f"{RESULTS}/tables/{name}"
    return {
        "csv": report(f"{stem}.csv", caption=f"../report/table_{name}.rst", category="Tables",
                      labels={"table": name}),
        "md": f"{stem}.md",
        "tex": f"{stem}.tex",
    }


rule collect:
    localrule: True
    input:
        summaries=expand(f"{RUN_DIR}/summary.json", run=RUNS),
    output:
        **{t: f"{RESULTS}/tables/{t}.csv" for t in ["metrics", "probes", "bounds", "timings"]},
        **table_outputs("runs"),
    log:
        f"{LOGS}/collect.log",
    params:
        runs=RUNS,
        run_dirs={r: f"{RESULTS}/runs/{r}" for r in RUNS},
        tables=f"{RESULTS}/tables",
    script:
        "../scripts/collect_tables.py"


rule growth:
    localrule: True
    input:
        probes=f"{RESULTS}/tables/probes.csv",
    output:
        **table_outputs("growth"),
    log:
        f"{LOGS}/growth.log",
    script:
        "../scripts/growth_table.py"


rule claims:
    localrule: True
    input:
        runs=f"{RESULTS}/tables/runs.csv",
        probes=f"{RESULTS}/tables/probes.csv",
        growth=f"{RESULTS}/tables/growth.csv",
    output:
        **table_outputs("claims"),
    log:
        f"{LOGS}/claims.log",
    script:
        "../scripts/claims_table.py"


rule tables:
    localrule: True
    input:
        TABLE_FILES,
