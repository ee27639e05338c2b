# Stage 1: the corpus, tokenized once for every run (nanoGPT-format uint16 .bin files), and its
# unigram and bigram cross-entropies: the baselines a run must beat to have learned. It reruns
# when a source file's content changes (sources.json: lnstab.study.record_sources).


rule corpus:
    input:
        sources=CORPUS_SOURCES,
    output:
        **{f"baselines_{k}": v for k, v in table_outputs("baselines").items()},
        meta=f"{RESULTS}/data/meta.json",
    log:
        f"{LOGS}/corpus.log",
    conda:
        CONDA_ENV
    params:
        data=BASE.get("data", {}),
        vocab_size=BASE.get("model", {}).get("vocab_size"),
        folder=lambda wc, output: os.path.dirname(output.meta),
    script:
        "../scripts/prepare_corpus.py"
