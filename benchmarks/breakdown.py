"""Where a study's time goes: per rule, the jobs' wall seconds from the Snakemake log of a run of
the workflow, the training runs' own split (steps, evaluation, probes; from their summary.json),
and the start-up a job pays before its work (Python, torch and lnstab imports, measured here).
Writes one entry of benchmarks/breakdown.json ("before" and "after" a change, measured in one
sitting), which `make bench` (benchmarks/bench.py) renders into docs/benchmarks.md. A training
group's job (rule train_<group>) counts under "train".

    python benchmarks/breakdown.py                      # the latest log in .snakemake/log, results/
    python benchmarks/breakdown.py --log FILE --results DIR --label before --note "..."
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
STARTED = re.compile(r"^(?:local)?rule ([\w.-]+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: ([\w.-]+)\)$")


def job_seconds(log: Path) -> dict[str, dict]:
    """rule -> {"jobs": n, "seconds": the sum of its jobs' wall seconds} from a Snakemake log
    (one-second stamps); and "makespan" from the first to the last stamp."""
    now = first = None
    pending_rule, started, rules = None, {}, {}
    for line in log.read_text().splitlines():
        if m := STAMP.match(line):
            now = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            first = first or now
        elif m := STARTED.match(line):
            pending_rule = m.group(1)
        elif (m := JOBID.match(line)) and pending_rule:
            started[m.group(1)] = (pending_rule, now)
            pending_rule = None
        elif (m := FINISHED.match(line)) and m.group(1) in started:
            rule, t0 = started.pop(m.group(1))
            rule = "train" if rule.startswith("train_") else rule  # one job per training group
            r = rules.setdefault(rule, {"jobs": 0, "seconds": 0.0})
            r["jobs"] += 1
            r["seconds"] += (now - t0).total_seconds()
    return {"rules": rules, "makespan": (now - first).total_seconds() if first else 0.0}


def training_split(results: Path) -> dict[str, float]:
    """Sums over the study's runs of their own timers (summary.json): training steps, evaluation,
    probes (with Jacobian estimates and bound rows)."""
    out = {"train_s": 0.0, "eval_s": 0.0, "probe_s": 0.0, "runs": 0}
    for path in sorted((results / "runs").glob("*/summary.json")):
        s = json.loads(path.read_text())
        out["runs"] += 1
        out["train_s"] += s.get("train_time_s") or 0.0
        out["eval_s"] += s.get("eval_time_s") or 0.0
        out["probe_s"] += s.get("probe_time_s") or 0.0
    return out


def start_up_seconds(repeats: int = 3) -> float:
    """The least of ``repeats`` fresh processes importing what a training job imports."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import lnstab.train, lnstab.study"], check=True,
                       env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
        times.append(time.perf_counter() - t0)
    return min(times)


def latest_log() -> Path:
    logs = sorted((ROOT / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit("no Snakemake log in .snakemake/log: run the workflow first (make workflow)")
    return logs[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, help="a Snakemake log of the study (default: the latest)")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--note", default="", help="how the run was timed (e.g. other work on the machine)")
    ap.add_argument("--label", default="after", choices=("before", "after"),
                    help="which side of a change this run of the study is")
    ap.add_argument("--commit", default="", help="the commit the study ran at")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "breakdown.json")
    args = ap.parse_args()
    log = args.log or latest_log()
    result = {"log": log.name, "note": args.note, "commit": args.commit, **job_seconds(log),
              "training": training_split(args.results), "start_up_s": start_up_seconds()}
    kept = json.loads(args.out.read_text()) if args.out.exists() else {}
    kept = kept if "after" in kept or "before" in kept else {}  # an older single-entry file is replaced
    kept[args.label] = result
    args.out.write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
