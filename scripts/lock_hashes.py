"""Add the sha256 of every pinned file to a pip lock (make lock runs it on envs/requirements.lock).

    python scripts/lock_hashes.py envs/requirements.lock

pip then installs the lock in hash-checking mode: a file whose bytes differ from the ones locked
(a rebuilt wheel, a tampered mirror) is refused instead of installed. The hashes are of the files
pip picks on this platform (Linux x86-64, CPython 3.11, the lock's header says so); pins already
hashed are hashed anew.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename


def read_lock(text: str) -> tuple[list[str], list[str]]:
    """(the header's comment lines, the pins 'name==version'), any hashes left out."""
    header, pins = [], []
    for line in text.splitlines():
        line = line.rstrip(" \\")
        if line.startswith("#") and not pins:
            header.append(line)
        elif line.strip() and not line.lstrip().startswith(("--hash", "#")):
            pins.append(line.strip())
    return header, pins


def file_name(path: Path) -> str:
    """The canonical project name of a wheel or sdist file."""
    if path.name.endswith(".whl"):
        return canonicalize_name(parse_wheel_filename(path.name)[0])
    return canonicalize_name(parse_sdist_filename(path.name)[0])


def main(lock: Path) -> int:
    header, pins = read_lock(lock.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pins.txt").write_text("\n".join(pins) + "\n")
        print(f"downloading the {len(pins)} pinned files to hash them ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-r", f"{tmp}/pins.txt",
                        "-d", f"{tmp}/files"], check=True)
        hashes: dict[str, list[str]] = {}
        for path in sorted(Path(tmp, "files").iterdir()):
            hashes.setdefault(file_name(path), []).append(hashlib.sha256(path.read_bytes()).hexdigest())
    lines = header[:]
    for pin in pins:
        name = canonicalize_name(pin.split("==")[0])
        if name not in hashes:
            print(f"{lock}: no file was downloaded for {pin}", file=sys.stderr)
            return 1
        lines.append(pin + " \\")
        lines += [f"    --hash=sha256:{h}" + (" \\" if i < len(hashes[name]) - 1 else "")
                  for i, h in enumerate(hashes[name])]
    lock.write_text("\n".join(lines) + "\n")
    print(f"{lock}: {len(pins)} pins, each with its file's sha256", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "envs/requirements.lock")))
