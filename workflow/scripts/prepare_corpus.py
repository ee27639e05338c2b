"""Tokenize the corpus once for all runs. Standalone: python prepare_corpus.py config/config.yaml"""
import sys

from lnstab import lineage
from lnstab.study import load_study, prepare_corpus, redirect_output

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        out = snakemake.output
        p = snakemake.params
        prepare_corpus(p.data, p.folder, out.meta, out.baselines_csv[:-len(".csv")], p.vocab_size)
elif __name__ == "__main__":
    cfg, _ = load_study(sys.argv[1] if len(sys.argv) > 1 else "config/config.yaml")
    results = cfg.get("results", "results")
    base = cfg.get("base", {})
    prepare_corpus(base.get("data", {}), f"{results}/data", f"{results}/data/meta.json",
                   f"{results}/tables/baselines", base.get("model", {}).get("vocab_size"))
