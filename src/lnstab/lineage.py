"""Lineage of a study's files: every workflow job records the sha256 of what it read and of what
it wrote (``<results>/lineage/<job>.json``), so that a file edited after the job that made it is
found and named, by the next job that reads it, by the workflow's manifest rule and by
``lnstab check-manifest``. Times never decide anything here: only content does.

A record: {"job": name, "inputs": {path: sha256}, "outputs": {path: sha256}}; paths are as the
workflow names them (relative to the directory it runs in).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from pathlib import Path

from .io import write_json

RECORDS = "lineage"  # the folder of a study's records, under its results folder


class LineageError(RuntimeError):
    """A file's content is not what the job that wrote it recorded."""


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def record_name(rule: str, wildcards: dict) -> str:
    """One record per job: the rule, and the run for per-run rules."""
    return "/".join([rule, *(str(v) for _, v in sorted(wildcards.items()))])


def load_records(results: str | Path) -> dict[str, dict]:
    folder = Path(results) / RECORDS
    records = {}
    for path in sorted(folder.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
            records[rec["job"]] = rec
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LineageError(f"{path}: unreadable lineage record ({e}); delete it and rerun the job") from None
    return records


def producers(records: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """path -> (job that wrote it, the sha256 it recorded)."""
    return {os.path.normpath(p): (job, digest) for job, rec in records.items()
            for p, digest in rec["outputs"].items()}


def _problem(path: str, job: str, recorded: str, missing_ok: bool = False) -> str | None:
    if not os.path.exists(path):
        return None if missing_ok else f"{path}: missing (written by job {job}); rerun the workflow to rebuild it"
    now = sha256(path)
    if now != recorded:
        return (f"{path}: differs from what job {job} wrote (sha256 {recorded[:12]} recorded, {now[:12]} now): "
                "edited after it was made? delete it and rerun the workflow to rebuild it")
    return None


def edited(paths, records: dict[str, dict], missing_ok: bool = False) -> list[str]:
    """A message for every path whose content is not what its producing job recorded."""
    made = producers(records)
    found = []
    for p in map(os.path.normpath, map(str, paths)):
        if p in made and (msg := _problem(p, *made[p], missing_ok)):
            found.append(msg)
    return found


def check_chain(records: dict[str, dict], missing_ok: bool = False) -> list[str]:
    """Every recorded output is still what its job wrote, and every job read what its inputs'
    producers wrote (a file edited between two jobs is named although it was rebuilt since).
    ``missing_ok``: files that are not there are not named (a clone holds no run folders)."""
    found = edited(producers(records), records, missing_ok)
    made = producers(records)
    for job, rec in sorted(records.items()):
        for p, digest in rec["inputs"].items():
            p = os.path.normpath(p)
            if p in made and made[p][1] != digest:
                found.append(f"{p}: job {job} read content (sha256 {digest[:12]}) other than what job "
                             f"{made[p][0]} wrote ({made[p][1][:12]}): rerun the workflow")
    return found


def _files(named) -> list[str]:
    """The file paths of a Snakemake input or output (flattened lists, folders left out)."""
    out = []
    for item in named:
        for p in (item if isinstance(item, (list, tuple)) else [item]):
            if os.path.isfile(p):
                out.append(str(p))
    return out


def under(path: str | Path, folder: str | Path) -> bool:
    a, b = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([a, b]) == b


def of_study(path: str | Path, results: str | Path) -> bool:
    """Whether ``path`` is a file of the study whose results folder is ``results``: under it, and
    not under another study's results folder nested in it (one holding its own tables/, as
    results/extended does inside results: the summary cites those, and their jobs are that
    study's)."""
    if not under(path, results):
        return False
    top = Path(os.path.abspath(results))
    for folder in Path(os.path.abspath(path)).parents:
        if folder == top:
            return True
        if (folder / "tables").is_dir():
            return False
    return True


def as_committed(paths: list[str]) -> set[str]:
    """The paths whose content is exactly their committed version (git's blob of HEAD's index):
    a clone's committed tables and figures, vouched for by the commit rather than by a record.
    None outside a git checkout."""
    if not paths:
        return set()
    try:
        staged = subprocess.run(["git", "ls-files", "-s", "--", *paths], capture_output=True, text=True,
                                check=True, timeout=60).stdout.splitlines()
        blobs = {os.path.normpath(line.split("\t", 1)[1]): line.split()[1] for line in staged}
        tracked = [p for p in paths if os.path.normpath(p) in blobs]
        if not tracked:
            return set()
        now = subprocess.run(["git", "hash-object", "--", *tracked], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
        dirty = set(subprocess.run(["git", "diff", "--name-only", "HEAD", "--", *tracked], capture_output=True,
                                   text=True, check=True, timeout=60).stdout.split())
    except (OSError, subprocess.SubprocessError, IndexError):
        return set()
    return {p for p, h in zip(tracked, now) if blobs[os.path.normpath(p)] == h and os.path.normpath(p) not in dirty}


def unrecorded(paths, records: dict[str, dict], results: str | Path) -> list[str]:
    """A message for every file of the study (``of_study``) that no job's record names as its
    output and that is not its committed version: made or edited by hand, or its record is gone
    (a removed lineage folder certifies nothing)."""
    made = producers(records)
    candidates = [p for p in map(os.path.normpath, map(str, paths)) if of_study(p, results) and p not in made]
    committed = as_committed(candidates)
    return [f"{p}: no lineage record of the job that made it ({Path(results) / RECORDS} holds none for it), and "
            "it is not the committed file: rerun the workflow with --forcerun on the rule that makes it, or "
            "restore it (git checkout)" for p in candidates if p not in committed]


@contextlib.contextmanager
def job(smk):
    """Around a Snakemake script's work: refuse inputs that differ from what their producers
    wrote, or that are study files no job recorded making, then record this job's inputs and
    outputs."""
    results = smk.config["results"].rstrip("/")
    name = record_name(smk.rule, dict(smk.wildcards.items()))
    inputs = _files(smk.input)
    records = load_records(results)
    bad = edited(inputs, records) + unrecorded(inputs, records, results)
    if bad:
        raise LineageError("inputs of job " + name + " are not what made them:\n  " + "\n  ".join(bad))
    yield
    record(results, name, inputs, _files(smk.output))


def record(results: str | Path, name: str, inputs, outputs) -> None:
    """Write one job's record: the sha256 of what it read and of what it wrote."""
    write_json(Path(results) / RECORDS / f"{name}.json",
               {"job": name, "inputs": {str(p): sha256(p) for p in inputs},
                "outputs": {str(p): sha256(p) for p in outputs}})
