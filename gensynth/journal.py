"""The run journal: an embedded SQLite file that records every candidate as soon as it is evaluated.

A synthesis run can be killed at any moment (kill -9 included); what was committed here is never redone.
Candidates are stored as the flat JSON of gensynth.records.Candidate and read back as Candidate; a Failure (a
candidate that could not be evaluated) beside them, with "failed": true.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from compiler.diagnostics import NetError
from gensynth.records import Candidate, Failure

JOURNAL = "journal.sqlite"  # the journal's file name in a run folder

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    key TEXT PRIMARY KEY,          -- 'cycle:index', or 'final:<arch>' for fully trained networks
    cycle INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    arch TEXT NOT NULL,            -- architecture hash
    record TEXT NOT NULL           -- JSON: decisions, macs, params, latency, accuracies, utility, wall time, ...
);
CREATE TABLE IF NOT EXISTS generator (cycle INTEGER PRIMARY KEY, state TEXT NOT NULL);
"""


# A WAL file starts with one of these big-endian magic numbers (https://www.sqlite.org/fileformat.html#wal_file_format)
WAL_MAGIC = (0x377F0682, 0x377F0683)
REPAIR = ("a journal cannot be trusted once damaged: restore journal.sqlite and journal.sqlite-wal from a copy, or "
          "start a new run with another --out (this folder is left as it is)")


def _is_search(record: Candidate | Failure) -> bool:
    return isinstance(record, Failure) or record.searched


def _search_position(record: Candidate | Failure) -> tuple[int, int]:
    """(cycle, index) of a search candidate's key "cycle:index"."""
    cycle, _, index = record.key.partition(":")
    return (int(cycle), int(index)) if cycle.isdigit() and index.isdigit() else (record.cycle, 0)


def damaged(path: Path, why: str) -> NetError:
    """The error for a journal that cannot be trusted: say so and stop (never start the run over)."""
    return NetError(f"{path} is damaged: {why}", notes=[REPAIR])


class Journal:
    """Append-mostly store of a run: metadata, candidate records and generator snapshots per cycle.

    A new journal is created with create=True; an existing one is validated before it is trusted (its files, its
    tables, its settings and every record), and a NetError says what is damaged instead of starting over."""

    def __init__(self, path: Path, create: bool = False):
        self.path = Path(path)
        if not create:
            self._check_files()
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each write is durable
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if create:
                self.db.executescript(SCHEMA)
            else:
                self._check_contents()
        except sqlite3.DatabaseError as err:
            raise damaged(self.path, f"SQLite cannot read it ({err})") from None

    def _check_files(self) -> None:
        if not self.path.is_file():
            raise NetError(f"{self.path} does not exist")
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            with wal.open("rb") as f:
                head = f.read(4)
            if len(head) < 4 or int.from_bytes(head, "big") not in WAL_MAGIC:
                raise damaged(self.path, f"{wal.name} is not a SQLite write-ahead log (the records it holds are lost)")
        elif self.path.stat().st_size == 0:
            raise damaged(self.path, "the file is empty")

    def _check_contents(self) -> None:
        if self.db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise damaged(self.path, "SQLite's integrity check fails")
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"meta", "candidates", "generator"} - tables
        if missing:
            raise damaged(self.path, f"it has no {', '.join(sorted(missing))} table (is journal.sqlite-wal missing?)")
        for key in ("config", "prototype_hash", "network"):
            if self.get_meta(key) is None:
                raise damaged(self.path, f"it holds no '{key}' (is journal.sqlite-wal missing?)")
        self._records(None)  # every record parses
        for (cycle,) in self.db.execute("SELECT cycle FROM generator").fetchall():
            self.generator_at(cycle)

    def close(self) -> None:
        self.db.close()

    def _json(self, text: str, what: str):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, TypeError) as err:
            raise damaged(self.path, f"{what} is not JSON ({err})") from None

    def get_meta(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return self._json(row[0], f"meta '{key}'") if row else None

    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def add_candidate(self, record: Candidate | Failure) -> None:
        """Journal a record; a later record of the same key replaces it (a failure tried again on resume)."""
        self.db.execute("INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?, ?)",
                        (record.key, record.cycle, record.seed, record.arch, json.dumps(record.to_json())))

    def _record(self, key: str, text: str) -> Candidate | Failure:
        data = self._json(text, f"record {key!r}")
        try:
            return Failure.from_json(data) if data.get("failed") else Candidate.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise damaged(self.path, f"record {key!r} cannot be read ({type(err).__name__}: {err})") from None

    def _records(self, cycle: int | None) -> list[Candidate | Failure]:
        """Every record (or those of one cycle): search candidates in (cycle, index) order, whatever order the
        workers finished them in, so that what is computed from them does not depend on the executor; the
        prototype and finalists where they were written."""
        if cycle is None:
            rows = self.db.execute("SELECT key, record FROM candidates ORDER BY rowid").fetchall()
        else:
            rows = self.db.execute("SELECT key, record FROM candidates WHERE cycle=? ORDER BY rowid", (cycle,)).fetchall()
        records = [self._record(*r) for r in rows]
        searched = sorted((r for r in records if _is_search(r)), key=_search_position)
        slots = iter(searched)
        return [next(slots) if _is_search(r) else r for r in records]

    def candidate(self, key: str) -> Candidate | None:
        row = self.db.execute("SELECT key, record FROM candidates WHERE key=?", (key,)).fetchone()
        record = self._record(*row) if row else None
        return record if isinstance(record, Candidate) else None

    def candidates(self, cycle: int | None = None) -> list[Candidate]:
        """Every evaluated record (or those of one cycle), search candidates in (cycle, index) order."""
        return [r for r in self._records(cycle) if isinstance(r, Candidate)]

    def failures(self, cycle: int | None = None) -> list[Failure]:
        """The search candidates that could not be evaluated (or those of one cycle)."""
        return [r for r in self._records(cycle) if isinstance(r, Failure)]

    def searched(self) -> list[Candidate]:
        """The search candidates: neither the prototype nor a finalist, in (cycle, index) order."""
        return [r for r in self.candidates() if r.searched]

    def save_generator(self, cycle: int, state: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO generator VALUES (?, ?)", (cycle, json.dumps(state)))

    def generator_at(self, cycle: int) -> dict:
        """θG as saved at the start of a cycle (what that cycle's candidates were sampled from)."""
        row = self.db.execute("SELECT state FROM generator WHERE cycle=?", (cycle,)).fetchone()
        if row is None:
            raise damaged(self.path, f"it has no generator state for cycle {cycle}")
        return self._json(row[0], f"the generator state of cycle {cycle}")

    def latest_generator(self) -> tuple[int, dict] | None:
        row = self.db.execute("SELECT cycle, state FROM generator ORDER BY cycle DESC LIMIT 1").fetchone()
        return (row[0], self._json(row[1], f"the generator state of cycle {row[0]}")) if row else None
