"""One figure from the tables. Standalone: python make_figure.py fig1_moments results/tables figures/fig1_moments
(every figure and the summary at once: lnstab figures, or make figures)"""
import sys
from pathlib import Path

from lnstab import lineage
from lnstab.figures import make_figure
from lnstab.study import redirect_output

if "snakemake" in globals():
    redirect_output(snakemake.log[0])
    with lineage.job(snakemake):  # inputs as their jobs wrote them; this job's record
        make_figure(snakemake.params.figure, dict(snakemake.input.items()), snakemake.output.png[:-len(".png")],
                    snakemake.params.style)
elif __name__ == "__main__":
    from lnstab.figures import FIGURES
    from lnstab.tables import data_file

    name, tables, out = sys.argv[1:4]
    make_figure(name, {t: Path(tables) / data_file(t) for t in FIGURES[name][1]}, out)
