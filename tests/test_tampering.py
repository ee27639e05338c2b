"""Nothing stale, forged or lost: the adversarial review of runs, checkpoints and tables (issue
21), one test per finding, each with inputs of its own: content changed under an old time, hand
edits, deleted run files, damaged and planted checkpoints, links, resumes by other code."""
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import pandas as pd
import pytest

from conftest import ROOT, TINY, smoke_config, snakemake, tiny_config
from lnstab.train import Preempted, Run, RunError, train


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lnstab.cli", *args], capture_output=True, text=True, **kw)


def tiny_args(*extra):
    return [a for o in TINY + list(extra) for a in ("--set", o)]


# -- the workflow: content, not times; every run file a target; lineage ------------------------
TEXT_1 = "a stitch in time saves nine; many hands make light work. " * 150
TEXT_2 = "nine saves time in stitch a; work light make hands many. " * 150  # same letters, same size


def _study(tmp_path, corpus):
    return smoke_config(tmp_path, sweeps=[{"placement": ["pre", "peri"], "n_layer": [1], "dt": [1.0]}],
                        screen={"enabled": False}, wasserstein={"enabled": False},
                        base={"model": {"d_model": 16, "n_head": 2, "block_size": 16},
                              "data": {"source": "text", "paths": [str(corpus)]},
                              "train": {"steps": 4, "batch_size": 2, "warmup_steps": 1, "eval_interval": 2,
                                        "ckpt_interval": 2, "log_interval": 2, "eval_batches": 1},
                              "probe": {"interval": 2, "batch_size": 2, "jacobian_iters": 2}})


def _jobs(dry) -> set[str]:
    """The rules a dry run would run; a training group's rule (train_<group>) as "train"."""
    names = {line.split()[1].rstrip(":") for line in dry.stdout.splitlines() if line.startswith(("rule ", "localrule "))}
    return {"train" if n.startswith("train_") else n for n in names}


@pytest.mark.slow
def test_workflow_trusts_content_not_times(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT_1)
    cfg = _study(tmp_path, corpus)
    study = lambda *args: snakemake(*args, "--configfile", str(cfg))  # noqa: E731
    res = study("--cores", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    results = tmp_path / "results"
    runs_csv = results / "tables" / "runs.csv"
    first = runs_csv.read_bytes()

    # 1. the same bytes with a newer time: nothing to do; other bytes with an older time: retrained
    os.utime(corpus)
    assert not _jobs(study("-n")), "a touch alone reran something"
    old = os.stat(runs_csv).st_mtime - 3600
    corpus.write_text(TEXT_2)
    os.utime(corpus, (old, old))  # what cp -p, rsync -a or a restore of another copy does
    dry = study("-n")
    assert {"corpus", "train", "collect"} <= _jobs(dry), dry.stdout[-2000:]
    res = study("--cores", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert runs_csv.read_bytes() != first
    before = {p: p.read_bytes() for p in (results / "tables").glob("*.csv") if p.name != "timings.csv"}

    # 3. deleted run files, and a whole run folder, are rebuilt by the same command
    a, b = sorted((results / "runs").iterdir())
    victims = [a / "probes.csv", a / "summary.json", a / "provenance.json"]
    for v in victims:
        v.unlink()
    shutil.rmtree(b)
    res = study("--cores", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert all(v.exists() for v in victims) and (b / "summary.json").exists()
    assert {p: p.read_bytes() for p in before} == before

    # 2. a hand-edited table or run file is named, by check-manifest and by the next job
    manifest = results / "manifest.sha256"
    claims = results / "tables" / "claims.csv"
    claims.write_text(claims.read_text().replace("untested", "supported", 1))
    res = cli("check-manifest", str(manifest))
    assert res.returncode == 1 and str(claims) in res.stderr, res.stderr
    claims.write_bytes(before[claims])
    assert cli("check-manifest", str(manifest)).returncode == 0
    runs_csv.write_text(runs_csv.read_text().replace("completed", "diverged", 1))
    res = study("--cores", "2")  # claims, figures and the summary would be rebuilt from it
    assert res.returncode != 0 and str(runs_csv) in res.stderr + res.stdout
    runs_csv.write_bytes(before[runs_csv])

    # 2b. certification needs the lineage records, and the manifest says what it could not check
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(line for line in lines if not line.rstrip().endswith("claims.csv")))
    res = cli("check-manifest", str(manifest))  # a line removed, its table edited or not
    assert res.returncode == 1 and f"{claims}: the manifest job certified it" in res.stderr, res.stderr
    manifest.write_text("".join(lines))
    gone = tmp_path / "elsewhere" / "manifest.sha256"
    gone.parent.mkdir()
    gone.write_text("".join(lines).replace(str(tmp_path), str(tmp_path / "moved")))
    res = cli("check-manifest", str(gone))
    assert res.returncode == 1 and "NOTHING COMPARED" in res.stderr, res.stderr
    shutil.move(results / "lineage", tmp_path / "lineage.aside")
    res = cli("check-manifest", str(manifest))
    assert res.returncode == 0 and "NOT CERTIFIED" in res.stderr and "no lineage records" in res.stderr, res.stderr
    runs_csv.write_text(runs_csv.read_text().replace("completed", "diverged", 1))
    res = study("--cores", "2")  # with no records, an edited table is not taken for a job's output
    assert res.returncode != 0 and f"{runs_csv}: no lineage record" in res.stderr + res.stdout
    runs_csv.write_bytes(before[runs_csv])
    shutil.rmtree(results / "lineage", ignore_errors=True)
    shutil.move(tmp_path / "lineage.aside", results / "lineage")
    summary = a / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "diverged", "diverged_step": 3}))
    res = study("--cores", "2")
    assert res.returncode != 0 and str(summary) in res.stderr + res.stdout


# -- 2. summary.json and provenance.json are what the checkpoint implies ------------------------
@pytest.mark.parametrize("edit", ["forged", "empty", "deleted"])
def test_summary_and_provenance_are_rewritten_from_the_checkpoint(tmp_path, edit):
    out = tmp_path / "run"
    train(tiny_config("train.steps=12"), out, verbose=False)
    originals = {n: (out / n).read_bytes() for n in ("summary.json", "provenance.json")}
    for name in originals:
        if edit == "forged":
            doc = json.loads((out / name).read_text())
            doc.update({"status": "diverged", "diverged_step": 2} if name == "summary.json" else {"torch": "1.0"})
            (out / name).write_text(json.dumps(doc))
        elif edit == "empty":
            (out / name).write_text("{}")
        else:
            (out / name).unlink()
    res = cli("train", "--out", str(out), *tiny_args("train.steps=12"))
    assert res.returncode == 0, res.stderr
    assert "rewrote" in res.stderr and "summary.json" in res.stderr and "provenance.json" in res.stderr
    assert {n: (out / n).read_bytes() for n in originals} == originals


# -- 5. a damaged checkpoint is never resumed --------------------------------------------------
@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_one_flipped_byte_in_a_tensor_is_caught(tmp_path, where):
    out = tmp_path / "run"
    cli("train", "--out", str(out), "--quiet", *tiny_args("train.steps=20"), check=True)
    (out / "summary.json").unlink()
    ckpt = out / "ckpt.pt"
    with zipfile.ZipFile(ckpt) as z:  # the largest tensor record: model or optimizer state
        rec = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(ckpt.read_bytes())
    start = data.index(rec.filename.encode(), rec.header_offset) + len(rec.filename) + 64  # past the local header
    data[start + int(where * (rec.file_size - 128))] ^= 0x10
    ckpt.write_bytes(bytes(data))
    res = cli("train", "--out", str(out), "--quiet", *tiny_args("train.steps=20"))
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert str(ckpt) in lines[0] and "CRC" in lines[0] and "delete it" in lines[0]


# -- 6. a planted checkpoint runs no code; links are refused -----------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_checkpoint_runs_no_code(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    import torch

    torch.save({"model": _Payload(marker), "config": {}}, out / "ckpt.pt", pickle_protocol=pickle.HIGHEST_PROTOCOL)
    res = cli("train", "--out", str(out), "--quiet", *tiny_args())
    assert res.returncode == 2 and "unreadable checkpoint" in res.stderr, res.stderr
    assert not marker.exists(), "loading the checkpoint ran its code"


@pytest.mark.parametrize("name", [".lock", "summary.json", "ckpt.pt"])
def test_a_link_where_a_run_file_belongs_is_refused(tmp_path, name):
    out, outside = tmp_path / "run", tmp_path / "precious.txt"
    out.mkdir()
    outside.write_text("not the run's to change\n")
    (out / name).symlink_to(outside)
    res = cli("train", "--out", str(out), "--quiet", *tiny_args())
    assert res.returncode == 2 and "symbolic link" in res.stderr and str(out / name) in res.stderr, res.stderr
    assert outside.read_text() == "not the run's to change\n"
    assert not (out / "metrics.csv").exists()


@pytest.mark.parametrize("name, make, needle", [
    ("ckpt.pt", os.mkfifo, "not a regular file"),
    ("metrics.csv", os.mkdir, "is a folder"),
])
def test_a_fifo_or_folder_where_a_run_file_belongs_is_refused_at_once(tmp_path, name, make, needle):
    """A FIFO named ckpt.pt used to block the trainer forever (SIGTERM did not stop it): now it,
    and a folder where a file belongs, are refused before anything opens them."""
    out = tmp_path / "run"
    out.mkdir()
    make(out / name)
    res = cli("train", "--out", str(out), "--quiet", *tiny_args(), timeout=60)
    assert res.returncode == 2 and needle in res.stderr and str(out / name) in res.stderr, res.stderr


def test_an_output_name_too_long_for_the_file_system_is_one_line(tmp_path):
    for out in (tmp_path / ("a" * 300), tmp_path / ("a" * 300) / "run"):
        res = cli("train", "--out", str(out), "--quiet", *tiny_args(), timeout=60)
        assert res.returncode == 2 and "File name too long" in res.stderr and "Traceback" not in res.stderr, res.stderr


# -- 9. every segment of a resumed run is recorded; other code is not mixed in silently ---------
def _stop_after(monkeypatch, step):
    original = Run.after_step

    def after_step(self, row, bar):
        if self.state.step == step:
            self.stop_signal = 10  # as if SIGUSR1 arrived during this step
        return original(self, row, bar)

    monkeypatch.setattr(Run, "after_step", after_step)


def test_resume_by_other_code_is_refused_and_segments_are_recorded(tmp_path, monkeypatch):
    cfg = lambda: tiny_config("train.steps=24", "train.ckpt_interval=0")  # noqa: E731
    whole = train(cfg(), tmp_path / "whole", verbose=False)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _stop_after(m, 9)
        m.setattr("lnstab.runfolder.code_digest", lambda: "0" * 16)  # as if the source differed
        with pytest.raises(Preempted):
            train(cfg(), out, verbose=False)
    with pytest.raises(RunError, match="--allow-other-code"):
        train(cfg(), out, verbose=False)
    assert not (out / "summary.json").exists()
    resumed = train(cfg(), out, verbose=False, allow_other_code=True)
    # the whole digest compared: the real one starts with "0" once in 16 source trees
    steps = [(s["from_step"], s["to_step"], s["code_sha256"][:16]) for s in resumed["segments"]]
    assert steps[0] == (0, 9, "0" * 16) and steps[1][:2] == (9, 24) and steps[1][2] != "0" * 16
    prov = json.loads((out / "provenance.json").read_text())
    assert [(s["from_step"], s["to_step"]) for s in prov["segments"]] == [(0, 9), (9, 24)]
    assert all({"host", "world_size", "lnstab_version", "device"} <= set(s) for s in prov["segments"])
    # mixing is recorded, not a different training: the resumed run equals the whole one
    for name in ("metrics.csv", "probes.csv", "bounds.csv"):
        a, b = (pd.read_csv(d / name) for d in (tmp_path / "whole", out))
        a, b = (df.drop(columns=[c for c in ("tokens_per_s", "elapsed_s") if c in df]) for df in (a, b))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert resumed["final_val_loss"] == whole["final_val_loss"]


# -- 11, 12. values that would crash every job, and command-line inputs: one line, exit 2 -------
def _one_line_exit_2(res, *needles):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("seed", ["-3", "4294967297"])
def test_seed_outside_numpys_range_is_a_config_error(tmp_path, seed):
    _one_line_exit_2(cli("train", "--out", str(tmp_path / "r"), *tiny_args(f"seed={seed}")), "seed")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("change, key", [
    ({"sweeps": [{"placement": ["pre"], "n_layer": [1], "dt": [1.0], "seed": [-2]}]}, "seed"),
    ({"resources": {"train": {"processes": 3}}}, "train.batch_size"),
])
def test_workflow_refuses_what_every_job_would_crash_on(tmp_path, change, key):
    cfg = smoke_config(tmp_path, **change)
    res = snakemake("-n", "--configfile", str(cfg))
    said = res.stdout + res.stderr
    assert res.returncode != 0 and key in said and "Traceback" not in said, said[-2000:]
    assert not (tmp_path / "results").exists()


def test_a_key_given_twice_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 0.01\nmodel:\n  dt: 0.5\ntrain:\n  steps: 3\n")
    _one_line_exit_2(cli("show-config", str(path)), str(path), ":5:", "'train' is given twice")
    study = tmp_path / "study.yaml"
    study.write_text("sweeps:\n- placement: [pre]\n  n_layer: [2]\n  n_layer: [3]\n")
    _one_line_exit_2(cli("plan", str(study)), "'n_layer' is given twice")


@pytest.mark.parametrize("args, needle", [
    (["--mfu", "0"], "--mfu"), (["--mfu", "nan"], "--mfu"), (["--mfu", "-0.2"], "--mfu"),
    (["--gpu-memory", "0"], "--gpu-memory"), (["--csv", "/proc/no/such.csv"], "--csv"),
])
def test_plan_arguments_are_checked(args, needle):
    _one_line_exit_2(cli("plan", "config/paper.yaml", *args, cwd=ROOT), needle)


@pytest.mark.parametrize("train_resources, needle", [
    ({"processes": 0}, "resources.train.processes"), ({"runtime": 0}, "resources.train.runtime"),
    ({"runtime": -30}, "resources.train.runtime"), ({"mem_mb": -1}, "resources.train.mem_mb"),
    ({"processes": 5}, "do not split"),
])
def test_plan_checks_a_studys_resources(tmp_path, train_resources, needle):
    study = {"sweeps": [{"placement": ["pre"], "n_layer": [2], "dt": [1.0]}],
             "base": {"model": {"vocab_size": 50}, "train": {"batch_size": 8}},
             "resources": {"train": train_resources}}
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(study))
    _one_line_exit_2(cli("plan", str(path)), needle)
    path.write_text("")
    _one_line_exit_2(cli("plan", str(path)), "empty")


@pytest.mark.parametrize("study, needle", [
    ("sweeps: 5", "sweeps: expected a non-empty list"),
    ("sweeps: []", "sweeps: expected a non-empty list"),
    ("sweeps: [5]", "sweeps[0]: expected a mapping"),
    ("sweeps: [{placement: pre}]", "sweeps[0].placement: expected a non-empty list"),
    ("sweeps: [{placement: [pre]}]\nbase: 5", "base: expected a mapping"),
    ("sweeps: [{placement: [pre]}]\nbase: {model: 5}", "base.model: expected a mapping"),
])
def test_plan_names_the_part_of_a_study_that_is_not_shaped_like_one(tmp_path, study, needle):
    path = tmp_path / "study.yaml"
    path.write_text(study + "\n")
    _one_line_exit_2(cli("plan", str(path)), needle)


def test_plan_covers_every_placement(tmp_path):
    from lnstab.config import PLACEMENTS

    study = {"sweeps": [{"placement": list(PLACEMENTS), "n_layer": [4], "dt": [1.0]}],
             "base": {"model": {"vocab_size": 50}}}
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(study))
    res = cli("plan", str(path))
    assert res.returncode == 0, res.stderr
    assert all(f"{p}-L4" in res.stdout for p in PLACEMENTS), res.stdout


@pytest.mark.parametrize("content, needle", [(None, "cannot read"), ("", "lists no files"),
                                             ("abc  tables/x.csv\n", ":1:"), ("0" * 64 + " x\n", ":1:")])
def test_check_manifest_input_is_checked(tmp_path, content, needle):
    manifest = tmp_path / "manifest.sha256"
    if content is not None:
        manifest.write_text(content)
    _one_line_exit_2(cli("check-manifest", str(manifest)), needle)


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir])
def test_a_manifest_entry_that_is_no_regular_file_is_named_without_reading_it(tmp_path, make):
    """A FIFO listed in a manifest hung check-manifest (it was opened to be hashed); a folder was a
    traceback: each is named as not a regular file, the manifest MISMATCH (exit 1), in seconds."""
    (tmp_path / "a.csv").write_text("x\n")
    make(tmp_path / "odd")
    digest = hashlib.sha256(b"x\n").hexdigest()
    manifest = tmp_path / "manifest.sha256"
    manifest.write_text(f"{digest}  a.csv\n{digest}  odd\n")
    res = cli("check-manifest", str(manifest), cwd=tmp_path, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "odd: listed in the manifest but not a regular file" in res.stdout + res.stderr


BLOCKS = '''
import torch.nn as nn
from lnstab.model import Residual

class Narrowing(Residual):
    def forward(self, x):
        return x[..., 1:]

class OneArgument(Residual):
    def __init__(self, f):
        super().__init__(f, None)
'''


@pytest.mark.parametrize("name", ["Narrowing", "OneArgument"])
def test_a_screened_block_with_the_wrong_interface_is_one_line(tmp_path, name):
    (tmp_path / "myblocks.py").write_text(BLOCKS)
    res = cli("screen", "--block", f"myblocks:{name}", "--steps", "5", "--set", "train.warmup_steps=1",
              "--out", str(tmp_path / "screen"), cwd=tmp_path,
              env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])})
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and f"myblocks:{name}" in lines[0], res.stderr
    assert not (tmp_path / "screen" / "runs").exists()


def test_out_that_is_a_file_or_unwritable_is_one_line(tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    _one_line_exit_2(cli("train", "--out", str(afile), *tiny_args()), str(afile))
    _one_line_exit_2(cli("train", "--out", str(afile / "run"), *tiny_args()), str(afile / "run"))


def test_a_full_disk_during_a_checkpoint_loses_nothing(tmp_path):
    """The file-size limit makes a checkpoint write fail as a full disk does; the run stops with
    one line, the previous checkpoint is intact, and the same command then finishes the run."""
    import resource
    import signal as sig

    out, whole = tmp_path / "run", tmp_path / "whole"
    args = tiny_args("train.steps=30", "train.ckpt_interval=10")
    cli("train", "--out", str(whole), "--quiet", *args, check=True)
    size = (whole / "ckpt.pt").stat().st_size

    def limit():  # room for the first checkpoints' files, not for the final one with every row
        sig.signal(sig.SIGXFSZ, sig.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size - 2048, size - 2048))

    res = subprocess.run([sys.executable, "-m", "lnstab.cli", "train", "--out", str(out), "--quiet", *args],
                         capture_output=True, text=True, preexec_fn=limit)
    _one_line_exit_2(res, str(out), "cannot write", "intact")
    assert not list(out.glob(".*.tmp"))
    cli("train", "--out", str(out), "--quiet", *args, check=True)
    for name in ("probes.csv", "bounds.csv"):
        assert (out / name).read_bytes() == (whole / name).read_bytes()


# -- 4, 10. a stop never loses the step reached, exits 3, and prints no traceback ---------------
JOB = '''
import sys
from lnstab.cli import run_rank
from lnstab.launch import note_stop_signals
note_stop_signals()
from lnstab.study import prepare_corpus, train_grid_point
prepare_corpus({"source": "shakespeare"}, "data", "data/meta.json", "baselines")
base = {"model": {"d_model": 24, "n_head": 3, "block_size": 24}, "train": {"steps": 4000, "batch_size": 6,
        "warmup_steps": 2, "eval_interval": 1000, "ckpt_interval": 0, "log_interval": 5, "eval_batches": 1},
        "probe": {"interval": 1000, "batch_size": 2, "jacobian_iters": 2}}
params = {"placement": "peri", "n_layer": 2, "dt": 0.5, "weight_decay": 0.1, "lr": 0.01, "seed": 3}
sys.exit(run_rank(lambda: train_grid_point(params, base, "data/meta.json", "run", int(sys.argv[1]))))
'''
SLOW_SAVE = '''
import os, time
import lnstab.io
_save = lnstab.io.save_torch
def save_torch(path, obj):  # a checkpoint write as slow as a paper-scale one on a busy file system
    time.sleep(float(os.environ["SLOW_SAVE_S"]))
    _save(path, obj)
lnstab.io.save_torch = save_torch
'''


def _catches(pid, sig) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt")), 16)
    return bool(mask >> (sig - 1) & 1)


def _job(tmp_path, processes, slow_save_s=0.0):
    import signal as sig

    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "hook").mkdir(exist_ok=True)
    (tmp_path / "hook" / "sitecustomize.py").write_text(SLOW_SAVE if slow_save_s else "")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), str(ROOT / "src")]),
           "SLOW_SAVE_S": str(slow_save_s), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "job.py", str(processes)], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)
    return proc, sig


@pytest.mark.slow
def test_a_stop_waits_for_a_slow_checkpoint_on_two_processes(tmp_path):
    """torchrun would SIGKILL the ranks 30 s after the signal; a 35 s checkpoint write is kept."""
    import torch

    proc, sig = _job(tmp_path, 2, slow_save_s=35)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "step 20/4000" in line:
            proc.send_signal(sig.SIGTERM)
            break
    err = "".join(lines) + proc.communicate(timeout=300)[1]
    assert proc.returncode == 3, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["step"] >= 20


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("delay", [0.0, 0.4, 1.5])
def test_a_stop_during_start_up_exits_3_without_a_traceback(tmp_path, processes, delay):
    """From the moment the command handles the signal (its first lines), whatever it is doing:
    importing torch, tokenizing, building the model, starting the ranks, training."""
    import time

    proc, sig = _job(tmp_path, processes)
    t0 = time.monotonic()
    while not _catches(proc.pid, sig.SIGTERM) and time.monotonic() - t0 < 60:
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(sig.SIGTERM)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 3, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


def test_checkpoints_of_earlier_versions_still_load(tmp_path):
    """Before weights_only loading, checkpoints held numpy's RNG state as an array and rows with
    numpy scalars: they load (rebuilding arrays runs no code), and a key added since then counts
    at its default."""
    import numpy as np
    import torch

    from lnstab.runfolder import read_checkpoint, set_numpy_rng_state

    np.random.seed(7)
    state = np.random.get_state()
    torch.save({"model": {}, "config": {"seed": 0}, "numpy_rng": state, "rows": [{"ratio": np.float64(0.5)}]},
               tmp_path / "ckpt.pt")
    ck = read_checkpoint(tmp_path / "ckpt.pt")
    set_numpy_rng_state(ck["numpy_rng"])
    assert np.random.rand() == (np.random.seed(7), np.random.rand())[1]
    assert ck["rows"][0]["ratio"] == 0.5


def test_what_needs_a_lineage_record(tmp_path, monkeypatch):
    """A job's study file needs a record of the job that made it, unless it is the committed file
    (a clone's tables, vouched for by the commit); another study's tables nested in the results
    folder (results/extended, which the summary cites) are that study's, not this one's."""
    from lnstab.lineage import of_study, unrecorded

    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    (results / "extended" / "tables").mkdir(parents=True)
    assert of_study(results / "tables" / "runs.csv", results)
    assert of_study(results / "runs" / "pre-L4" / "summary.json", results)
    assert not of_study(results / "extended" / "tables" / "claims.csv", results)
    assert not of_study(tmp_path / "elsewhere.csv", results)
    (results / "tables" / "runs.csv").write_text("a,b\n1,2\n")
    assert len(unrecorded([results / "tables" / "runs.csv"], {}, results)) == 1  # outside any checkout
    monkeypatch.chdir(ROOT)
    committed = "results/tables/baselines.csv"
    if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", committed], cwd=ROOT).returncode:
        pytest.skip(f"{committed} differs from HEAD in this checkout")
    assert unrecorded([committed], {}, "results") == []


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EACCES"])
def test_a_full_disk_in_a_workflow_job_is_one_line_in_its_log(tmp_path, errno_name):
    """A job script (collect, claims, ...) whose write fails on a full disk or a refused folder:
    its log holds one line naming the file and the cause, and the job exits 1."""
    log = tmp_path / "logs" / "collect.log"
    code = ("import errno, sys\nfrom lnstab.study import redirect_output\n"
            f"redirect_output({str(log)!r})\n"
            f"raise OSError(errno.{errno_name}, __import__('os').strerror(errno.{errno_name}), 'results/tables/runs.csv')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = log.read_text().strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1 and "Traceback" not in log.read_text(), log.read_text()
    assert lines[0].startswith("lnstab: results/tables/runs.csv: ") and "run the same command" in lines[0]
