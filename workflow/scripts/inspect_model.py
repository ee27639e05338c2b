"""Checkpoints -> lnstab inspect's tables: one pretrained model (rule inspect), a run of the study
exported to transformers' format (rule inspect_export), or every inspection's tables (rule
inspection_tables). Standalone: python inspect_model.py MODEL OUT (as `lnstab inspect MODEL --out OUT`)."""
import sys

import torch

from lnstab import lineage
from lnstab.pretrained import inspect, inspect_run, write_inspection_tables
from lnstab.study import redirect_output

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        p, out = snakemake.params, snakemake.output
        if snakemake.rule == "inspect":
            s = p.settings
            torch.set_num_threads(s["threads"])  # the tables must not follow the machine's cores
            inspect(p.model, out.summary.rsplit("/", 1)[0], tokens=s["tokens"], batch=s["batch"], dtype=s["dtype"],
                    name=snakemake.wildcards.name, quantise=tuple(s["quantise"]))
        elif snakemake.rule == "inspect_export":
            inspect_run(p.folder, snakemake.input.meta, out.summary.rsplit("/", 1)[0])
        else:
            write_inspection_tables(p.folders, out.inspected_csv.rsplit("/", 1)[0])
elif __name__ == "__main__":
    inspect(sys.argv[1], sys.argv[2])
