"""Run folders: where `train` and `synth` write a run. A folder is claimed before any work, so that a run never
silently replaces another one's files, and a path that cannot hold a run fails at once, not after hours."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from compiler.backend.atomic import atomic_write
from compiler.diagnostics import NetError
from gensynth.generator import GeneratorState
from gensynth.journal import Journal, damaged
from gensynth.records import PROTOTYPE

TRAIN_FILES = ("weights.safetensors", "metrics.json")  # a folder holding one of these holds a training run
SYNTH_FILES = ("journal.sqlite", "prototype.safetensors", "generator.json")  # ... a synthesis run


def holds_run(folder: Path, marks: tuple[str, ...]) -> list[str]:
    """The files of `marks` that `folder` holds."""
    return [m for m in marks if (folder / m).exists()]


def free_folder(base: Path, marks: tuple[str, ...]) -> Path:
    """`base`, or base-2, base-3, ...: the first that holds no run (for an --out the user did not name)."""
    folder, n = base, 1
    while folder.exists() and (not folder.is_dir() or holds_run(folder, marks)):
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def claim_folder(out: Path, marks: tuple[str, ...], what: str, force: bool = False,
                 hint: str = "choose another --out") -> Path:
    """Create `out` for a new run; a NetError when it is a file, cannot be written, or already holds a run (unless
    `force`: then its files are replaced as the new run writes them)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NetError(f"--out {out} is a file; give a folder for the {what}")
    found = holds_run(out, marks) if out.is_dir() else []
    if found and not force:
        raise NetError(f"{out} already holds a {what} ({', '.join(found)}); nothing was changed",
                       notes=[hint])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NetError(f"cannot create the run folder {out}: {err.strerror or err}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise NetError(f"cannot write in the run folder {out}: permission denied")
    return out


def copy_into(source: Path, target: Path, force: bool = False) -> None:
    """Copy a file into a run folder atomically; nothing to do when it already is that file (or holds the same
    bytes), and a NetError rather than replace another file of that name (unless `force`)."""
    source, target = Path(source), Path(target)
    try:
        data = source.read_bytes()
        if target.exists() and (os.path.samefile(source, target) or target.read_bytes() == data):
            return
        if target.exists() and not force:
            raise NetError(f"{target} exists and is not a copy of {source}; nothing was changed",
                           notes=["add --force to replace it, or choose another --out"])
        atomic_write(target, data)
    except OSError as err:
        raise NetError(f"cannot copy {source} to {target}: {err.strerror or err}") from None


def write_file(target: Path, data: str | bytes) -> None:
    """Write one file of a run atomically; an OS error is a NetError naming the file."""
    try:
        atomic_write(target, data)
    except OSError as err:
        raise NetError(f"cannot write {target}: {err.strerror or err}") from None


def digest(path: Path) -> str:
    """The SHA-256 of a file (the prototype's weights, as the journal remembers them)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def journal_without_work(path: Path) -> bool:
    """A readable journal without a single record: what a run stopped before the prototype was trained leaves."""
    try:
        journal = Journal(path)
    except NetError:
        return False
    try:
        return not journal.candidates() and journal.latest_generator() is None
    finally:
        journal.close()


def check_run_files(journal: Journal, out: Path) -> None:
    """The journal must know every file the run wrote beside it; one it does not know means it lost records
    (a deleted or damaged journal.sqlite-wal), and the run stops rather than redo and overwrite work."""
    weights, mark = out / "prototype.safetensors", journal.get_meta("prototype_weights")
    if weights.exists() and mark is None and journal.candidate(PROTOTYPE) is None:
        raise damaged(journal.path, f"it has no record of {weights.name}, which this run trained; it has "
                                    "lost records (is journal.sqlite-wal missing?)")
    if mark is not None and not weights.exists():
        raise NetError(f"{weights} is missing: the journal says this run saved it, and its records were "
                       "computed from it", notes=["restore the file, or start a new run with another --out"])
    if mark is not None and digest(weights) != mark:
        raise NetError(f"{weights} changed since this run saved it; its records were computed from the old one",
                       notes=["restore the file, or start a new run with another --out"])
    generator = out / "generator.json"
    if generator.exists():
        on_disk = GeneratorState.load(generator).cycle
        latest = journal.latest_generator()
        if latest is None or latest[0] < on_disk:
            raise damaged(journal.path, f"{generator.name} is at cycle {on_disk} but the journal only "
                                        f"reaches cycle {latest[0] if latest else 'none'}; it has lost records")
