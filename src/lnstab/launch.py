"""How a training job starts and stops: the stop signals, and the ranks of one multi-process
job on this node, as the workflow and ``lnstab train --processes N`` start them.

lnstab starts the N ranks itself (the environment torchrun would give them: RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) rather than through torchrun, because a stop must never
lose the checkpoint of the step reached: on SIGTERM torchrun SIGKILLs its workers after
--shutdown_timeout (30 s by default), and writing a multi-GB checkpoint can take longer (GPT-2
XL's, about 19 GB: lnstab plan). Here a stop signal is passed on to every rank, and nothing is
killed while they finish their step and write the checkpoint; the scheduler's hard limit still
applies, which is why profiles/slurm asks for the signal 5 minutes early. torchrun is not
offered: besides the grace, its ranks end a stop with a traceback and exit 1, not 3.

Exit status of ``launch``: 0 when every rank finished, lnstab.train.PREEMPTED_EXIT when a stop
signal ended the job (the checkpoint holds the step reached; the same command resumes), else the
first failing rank's status (the other ranks are then stopped: they would wait for it forever).
"""
from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time

# what a scheduler sends before a time limit or a preemption (SLURM: SIGTERM, or the --signal of
# profiles/slurm): the trainer finishes its step, writes a checkpoint and exits PREEMPTED_EXIT
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT = 3
FAILED_RANK_GRACE_S = 10  # after a rank failed, the others get this long to exit before SIGKILL
EARLY_STOPS: list[int] = []  # stop signals that arrived before the training loop took over


def note_stop_signals() -> None:
    """Before a training's start-up (imports, data loading): a stop signal then is noted, so
    that the run stops with PREEMPTED_EXIT when its loop begins, instead of dying."""
    for s in STOP_SIGNALS:
        signal.signal(s, lambda signum, frame: EARLY_STOPS.append(signum))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_status(codes: list[int], stopped: bool) -> int:
    """The job's status from its ranks' (negative: killed by that signal). A rank that a stop
    signal reached before it installed its handler (while importing) died of it: a stop too."""
    if all(c == 0 for c in codes):
        return 0
    stop_codes = {0, PREEMPTED_EXIT, *(-s for s in STOP_SIGNALS)}
    failures = [c for c in codes if c not in stop_codes]
    if failures:
        return failures[0] if failures[0] > 0 else 128 - failures[0]  # a shell's status for a signal
    return PREEMPTED_EXIT


def launch(module_args: list[str], processes: int, env: dict, stdout=None, stderr=None, poll_s: float = 0.1) -> int:
    """Run ``python -m MODULE_ARGS`` on ``processes`` ranks and wait for them (see the module)."""
    procs: list[subprocess.Popen] = []
    stopped: list[int] = list(EARLY_STOPS)  # noted while this process was starting

    def forward(signum, frame):
        stopped.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGUSR1)  # each rank finishes its step and writes the checkpoint

    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    job_env = {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
               "WORLD_SIZE": str(processes), "LOCAL_WORLD_SIZE": str(processes)}
    try:
        for rank in range(processes):
            # their own session: a terminal's Ctrl-C or a process-group signal reaches them only
            # through ``forward`` (once), not twice
            procs.append(subprocess.Popen([sys.executable, "-m", *module_args],
                                          env={**job_env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                          stdout=stdout, stderr=stderr, start_new_session=True))
            if stopped:  # a signal during start-up reaches the ranks started after it too
                procs[-1].send_signal(signal.SIGUSR1)
        failed_at = None
        while any(p.poll() is None for p in procs):
            codes = [p.returncode for p in procs if p.returncode is not None]
            if failed_at is None and any(c not in (0, PREEMPTED_EXIT) for c in codes) and not stopped:
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > FAILED_RANK_GRACE_S:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(poll_s)
        return exit_status([p.returncode for p in procs], bool(stopped))
    finally:
        for p in procs:  # an exception here (Ctrl-C): no rank outlives the launcher
            if p.poll() is None:
                p.kill()
                p.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def catching_stop_signals(note):
    """While training: a stop signal is passed to ``note(signum)``, which the loop acts on at the
    end of its current step; one that arrived during start-up (EARLY_STOPS) is noted at once."""
    def handler(signum, frame):
        note(signum)
    try:
        previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals cannot be caught here
        previous = {}
    if EARLY_STOPS:
        note(EARLY_STOPS[-1])
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
