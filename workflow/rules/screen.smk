# Stage 5: screen one architecture (config `screen`) against Pre-, Peri- and Post-LN at the same
# size, at initialisation and after a short training (lnstab.screen); fig7_screen draws it.


rule screen:
    output:
        **{
            f"verdicts_{ext}": path
            for ext, path in table_outputs("screen_verdicts").items()
        },
        sublayers=f"{RESULTS}/tables/screen_sublayers.csv",
    log:
        f"{LOGS}/screen.log",
    conda:
        CONDA_ENV
    threads: BASE.get("train", {}).get("threads", 1)
    params:
        base=config["screen"]["base"],
        block=config["screen"]["block"] or None,
        folder=f"{RESULTS}/screen",
        tables=lambda wc, output: os.path.dirname(output.sublayers),
    script:
        "../scripts/screen.py"
