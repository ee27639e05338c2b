"""Command line: ``lnstab train CONFIG.yaml --out DIR --set model.dt=0.5 --set model.placement=peri``.

On several processes of one node: ``lnstab train ... --processes N`` (lnstab.launch starts the ranks and
passes a stop signal to each; lnstab.distributed)."""
from __future__ import annotations

import argparse
import os
import sys

from .config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    from . import __version__

    parser = argparse.ArgumentParser(prog="lnstab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lnstab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train one run (resumes if DIR holds a checkpoint)")
    tr.add_argument("config", nargs="?", help="YAML config; defaults are used for missing keys")
    tr.add_argument("--out", required=True, help="output folder of the run")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one key, e.g. --set model.placement=peri (repeatable)")
    tr.add_argument("--quiet", action="store_true", help="no progress output")
    tr.add_argument("--restart", action="store_true",
                    help="if DIR holds a checkpoint of another config or other data, move it to "
                         "DIR/superseded/<n>/ and train again (default: stop with a message)")
    tr.add_argument("--allow-other-code", action="store_true",
                    help="resume a run that another lnstab version or git commit trained so far (each "
                         "segment is recorded in provenance.json; default: stop with a message)")
    tr.add_argument("--processes", type=int, default=1, metavar="N",
                    help="train on N processes of this node (torch.distributed, each rank a share of every batch), "
                         "started by lnstab.launch: a stop signal reaches every rank, which finish their step, "
                         "checkpoint and exit 3 (default 1)")
    tr.add_argument("--watch", action="append", default=[], choices=["tensorboard", "wandb"],
                    help="also mirror metrics and probe summaries live to TensorBoard (<out>/tensorboard) or "
                         "W&B offline (<out>/wandb); metrics.csv stays the record (repeatable)")
    sh = sub.add_parser("show-config", help="print the resolved config as YAML and exit")
    sh.add_argument("config", nargs="?")
    sh.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    pl = sub.add_parser("plan", help="memory, GPU-hours and disk of every training job of a study, before submitting it")
    pl.add_argument("study", help="workflow config (sweeps, base, resources), e.g. config/paper_xl.yaml")
    pl.add_argument("--gpu", default="H100", help="GPU model for the peak FLOP/s (default H100)")
    pl.add_argument("--gpu-memory", type=float, default=80.0, metavar="GB", help="memory per GPU (default 80)")
    pl.add_argument("--mfu", type=float, default=0.35,
                    help="model-FLOPs utilisation assumed (default 0.35: docs/benchmarks.md)")
    pl.add_argument("--vocab-size", type=int, help="vocabulary, where base.model.vocab_size is unset")
    pl.add_argument("--csv", metavar="FILE", help="also write the per-job table as CSV")
    sc = sub.add_parser("screen", help="screen an architecture against Pre/Peri/Post-LN at three depths: verdicts "
                        "at init and after a short training at each of three learning rates")
    sc.add_argument("config", nargs="?", help="YAML run config (the screen's defaults fill the rest: lnstab.screen)")
    sc.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="e.g. --set model.placement=output --set model.norm=rmsnorm (repeatable)")
    sc.add_argument("--steps", type=int, help="training steps at each depth and learning rate (default 600, "
                    "lnstab.screen.SCREEN_BASE; at least 1)")
    sc.add_argument("--lrs", metavar="LR,LR,...", help="learning rates of the short trainings, each fitted across "
                    "depths apart (default 0.001,0.003,0.01: lnstab.screen.SCREEN_LRS)")
    sc.add_argument("--block", metavar="MODULE:CLASS", help="your own residual sub-layer (lnstab.model.Residual's interface)")
    sc.add_argument("--out", default="results/screen", help="folder for the tables, the figure and the runs")
    ins = sub.add_parser("inspect", help="probe a trained Transformer (transformers' save_pretrained folder or a "
                         "GGUF file: GPT-2, Llama, Qwen, Mistral, OLMo 2, Gemma 2/3, OPT, GPT-NeoX, BERT) as a "
                         "training run's final probe: probes.csv, bounds.csv, stream.csv, summary.json, and the "
                         "inspected tables and fig_inspect (Figure 1's layout) of every model given")
    ins.add_argument("model", nargs="+", help="an installed model (smollm2-135m, gemma3-270m, minilm-l6), a folder "
                     "written by save_pretrained, a .gguf file, or a name in the local transformers cache (nothing "
                     "is downloaded); several: each in OUT/<name>/")
    ins.add_argument("--text", metavar="FILE", help="UTF-8 text to measure on (default: the built-in corpus's "
                     "validation split)")
    ins.add_argument("--tokenizer", metavar="MODEL", help="a folder or cached name whose tokenizer to use "
                     "(default: the model folder's own, or GPT-2's BPE for GPT-2's vocabulary)")
    ins.add_argument("--tokens", type=int, default=256, help="tokens per sequence (default 256)")
    ins.add_argument("--batch", type=int, default=2, help="sequences (default 2)")
    ins.add_argument("--jacobians", action="store_true", help="also the sub-layers' Jacobian estimates (GPT-2; slower)")
    ins.add_argument("--quantise", metavar="FORMATS", default="", help="comma-separated GGUF formats (Q8_0, Q5_0, "
                     "Q4_1, Q4_K): a float32 model measured again with its weights quantised to each "
                     "(quantisation.csv)")
    ins.add_argument("--dtype", default="float32", help="float32 (default) or bfloat16 (families other than GPT-2)")
    ins.add_argument("--out", required=True, help="output folder")
    fg = sub.add_parser("figures", help="redraw every figure and the summary of a study from its tables "
                        "(no training, no Snakemake): make figures")
    fg.add_argument("study", nargs="?", default="config/config.yaml", help="workflow config (default config/config.yaml)")
    cp = sub.add_parser("compare", help="compare two results of one study (another CPU's against the committed): "
                        "verdicts, effects against intervals, per-table relative differences (exit 1 if a "
                        "conclusion differs)")
    cp.add_argument("a", help="results (or tables) folder, e.g. results")
    cp.add_argument("b", help="another results folder, or git:REF for the first folder as committed at REF")
    cp.add_argument("--rtol", type=float, help="also fail where a number differs by more than this, relatively")
    cm = sub.add_parser("check-manifest", help="compare files with a sha256 manifest (exit 1 if any differ)")
    cm.add_argument("manifest")
    args = parser.parse_args(argv)
    if args.command == "figures":
        from .study import redraw

        try:
            redraw(args.study)
        except (ValueError, OSError) as e:  # ConfigError is a ValueError
            print(f"lnstab figures: {e}", file=sys.stderr)
            return 2
        return 0
    if args.command == "compare":
        from .compare import compare

        try:
            return compare(args.a, args.b, args.rtol)
        except (ValueError, OSError) as e:
            print(f"lnstab compare: {e}", file=sys.stderr)
            return 2
    if args.command == "check-manifest":
        from .study import check_manifest

        try:
            bad = check_manifest(args.manifest)
        except ValueError as e:
            print(f"lnstab check-manifest: {e}", file=sys.stderr)
            return 2
        from .study import absent_from_manifest, uncertified

        absent = absent_from_manifest(args.manifest)
        listed = sum(1 for line in open(args.manifest) if line.strip())
        if absent:
            print(f"not present here (not compared): {len(absent)} of {listed} file(s), e.g. {absent[0]}",
                  file=sys.stderr)
        for problem in bad:
            print(problem, file=sys.stderr)
        if bad or len(absent) == listed:
            print(f"{'MISMATCH' if bad else 'NOTHING COMPARED'}: {args.manifest}", file=sys.stderr)
            return 1
        why = uncertified(args.manifest)
        print(f"HASHES MATCH, NOT CERTIFIED: {args.manifest}: {why}" if why else f"OK: {args.manifest}",
              file=sys.stderr)
        return 0
    if args.command == "plan":
        return plan(args)
    if args.command == "inspect":
        return inspect(args)
    if args.command == "screen":
        return screen(args)
    if args.command == "show-config":
        try:
            cfg = load_config(args.config, args.overrides)
        except ConfigError as e:
            print(f"lnstab: config error: {e}", file=sys.stderr)
            return 2
        from .config import described_yaml

        print(described_yaml(cfg), end="")
        return 0

    from .launch import note_stop_signals

    note_stop_signals()  # from here a stop during start-up ends the run with status 3, not 143
    if args.processes < 1:
        print(f"lnstab: --processes: at least 1, got {args.processes}", file=sys.stderr)
        return 2
    if args.processes > 1 and "RANK" not in os.environ:  # this process launches the ranks
        from .launch import launch

        rank_args = ["lnstab", "train", *([args.config] if args.config else []), "--out", args.out,
                     *[a for o in args.overrides for a in ("--set", o)], *(["--quiet"] if args.quiet else []),
                     *(["--restart"] if args.restart else []),
                     *(["--allow-other-code"] if args.allow_other_code else []),
                     *[a for w in args.watch for a in ("--watch", w)]]
        return launch(rank_args, args.processes, dict(os.environ))

    def work():
        from .train import train

        return train(load_config(args.config, args.overrides), args.out, verbose=not args.quiet,
                     restart_stale=args.restart, allow_other_code=args.allow_other_code,
                     watch=args.watch)

    return run_rank(work)


def run_rank(work) -> int:
    """One process of a training job (the only one, or a rank that lnstab.launch started):
    its exit status, and one line saying what ended it, from rank 0 only; no traceback for a
    stop, a config error or an unusable run folder."""
    from . import distributed
    from .train import PREEMPTED_EXIT, Preempted, RunError

    rank = os.environ.get("RANK", "0")

    def say(msg):
        if rank == "0":  # once, not once per rank
            print(f"lnstab: {msg}", file=sys.stderr, flush=True)

    try:
        summary = work()
        return 0 if summary["status"] in ("completed", "diverged") else 1
    except Preempted as e:
        say(e)
        return PREEMPTED_EXIT
    except ConfigError as e:
        say(f"config error: {e}")
        return 2
    except RunError as e:
        say(e)
        return 2
    except Exception as e:
        if rank == "0":
            raise
        # another rank: most often its peers stopped (rank 0 says why); one line, not a traceback
        cause = str(e).splitlines()[0] if str(e) else ""
        print(f"lnstab: rank {rank} stopped: {type(e).__name__}: {cause[:200]}", file=sys.stderr, flush=True)
        return 1
    finally:
        distributed.shutdown()


def inspect(args) -> int:
    from .pretrained import inspect_models

    try:
        if args.batch < 1:
            raise ConfigError(f"--batch: at least 1 sequence, got {args.batch}")
        text = None
        if args.text is not None:
            try:
                text = open(args.text, encoding="utf-8").read()
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"--text {args.text}: {getattr(e, 'strerror', None) or e}") from None
        from .pretrained.quantise import FORMATS

        quantise = tuple(f for f in args.quantise.split(",") if f)
        if bad := [f for f in quantise if f not in FORMATS]:
            raise ConfigError(f"--quantise: {bad[0]!r} is not one of {', '.join(FORMATS)}")
        inspect_models(args.model, args.out, text, args.tokens, args.batch, args.jacobians, args.dtype, args.tokenizer,
                       quantise)
    except ConfigError as e:
        print(f"lnstab inspect: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"lnstab inspect: {getattr(e, 'filename', '') or args.out}: {e.strerror}", file=sys.stderr)
        return 2
    except MemoryError:
        print("lnstab inspect: out of memory during the pass: try a smaller --batch or --tokens", file=sys.stderr)
        return 2
    return 0


def screen(args) -> int:
    from .study import run_screen

    overrides = args.overrides + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    try:
        lrs = None
        if args.lrs is not None:
            try:
                lrs = [float(x) for x in args.lrs.split(",") if x.strip()]
            except ValueError:
                raise ConfigError(f"--lrs {args.lrs!r}: comma-separated numbers, e.g. 0.001,0.003") from None
            if not lrs or any(not (x > 0) for x in lrs):
                raise ConfigError(f"--lrs {args.lrs!r}: at least one learning rate, each above 0")
        verdicts = run_screen(args.config, overrides, args.block, args.out, lrs=lrs)
    except (ConfigError, ValueError, OSError) as e:
        print(f"lnstab screen: {e}", file=sys.stderr)
        return 2
    from .screen import verdict_text

    print(verdict_text(verdicts))
    return 0


def plan(args) -> int:
    from .config import read_yaml
    from .plan import plan_study, render

    try:
        with open(args.study, encoding="utf-8") as f:
            study = read_yaml(f.read(), args.study)
        if study is None:
            raise ValueError("the file is empty")
        table = plan_study(study, args.gpu, args.gpu_memory, args.mfu, args.vocab_size)
    except OSError as e:
        print(f"lnstab plan: {args.study}: {e.strerror}", file=sys.stderr)
        return 2
    except (ValueError, KeyError) as e:  # ConfigError is a ValueError
        where = "" if str(e).startswith(f"{args.study}:") else f"{args.study}: "  # a YAML error names it
        print(f"lnstab plan: {where}{e}", file=sys.stderr)
        return 2
    print(render(table, study, args.gpu, args.gpu_memory, args.mfu), end="")
    if args.csv:
        from .io import write_csv

        try:
            write_csv(args.csv, table)
        except OSError as e:
            print(f"lnstab plan: --csv {args.csv}: {e.strerror}", file=sys.stderr)
            return 2
    return 0 if table["fits_memory"].all() and table["fits_runtime"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
