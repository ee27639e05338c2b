"""Command line: ``lnstab train CONFIG.yaml --out DIR --set model.dt=0.5 --set model.placement=peri``.

On several processes: ``torchrun --standalone --nproc_per_node=N -m lnstab train ...`` (lnstab.distributed)."""
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
    sh = sub.add_parser("show-config", help="print the resolved config as YAML and exit")
    sh.add_argument("config", nargs="?")
    sh.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    cm = sub.add_parser("check-manifest", help="compare files with a sha256 manifest (exit 1 if any differ)")
    cm.add_argument("manifest")
    args = parser.parse_args(argv)
    if args.command == "check-manifest":
        from .study import check_manifest

        bad = check_manifest(args.manifest)
        for path in bad:
            print(f"differs: {path}", file=sys.stderr)
        print(f"{'OK' if not bad else 'MISMATCH'}: {args.manifest}", file=sys.stderr)
        return 1 if bad else 0
    try:
        cfg = load_config(args.config, args.overrides)
        if args.command == "show-config":
            from .config import described_yaml

            print(described_yaml(cfg), end="")
            return 0
        from . import distributed
        from .train import PREEMPTED_EXIT, Preempted, RunError, train

        try:
            summary = train(cfg, args.out, verbose=not args.quiet, restart_stale=args.restart)
        except RunError as e:
            print(f"lnstab: {e}", file=sys.stderr)
            return 2
        except Preempted as e:
            if os.environ.get("RANK", "0") == "0":  # once, not once per rank
                print(f"lnstab: {e}", file=sys.stderr)
            return PREEMPTED_EXIT
        finally:
            distributed.shutdown()
    except ConfigError as e:
        print(f"lnstab: config error: {e}", file=sys.stderr)
        return 2
    return 0 if summary["status"] in ("completed", "diverged") else 1


if __name__ == "__main__":
    sys.exit(main())
