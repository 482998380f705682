"""The run journal: an embedded SQLite file that records every candidate as soon as it is evaluated.

A synthesis run can be killed at any moment (kill -9 included); what was committed here is never redone.
Candidates are stored as the flat JSON of gensynth.records.Candidate and read back as Candidate.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from gensynth.records import Candidate, Failure

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


class Journal:
    """Append-mostly store of a run: metadata, candidate records and generator snapshots per cycle."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each write is durable
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def get_meta(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def add_candidate(self, record: Candidate | Failure) -> None:
        """Journal a record; a later record of the same key replaces it (a failure tried again on resume)."""
        self.db.execute("INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?, ?)",
                        (record.key, record.cycle, record.seed, record.arch, json.dumps(record.to_json())))

    def candidate(self, key: str) -> Candidate | None:
        row = self.db.execute("SELECT record FROM candidates WHERE key=?", (key,)).fetchone()
        data = json.loads(row[0]) if row else None
        return Candidate.from_json(data) if data and not data.get("failed") else None

    def _records(self, cycle: int | None) -> list[dict]:
        if cycle is None:
            rows = self.db.execute("SELECT record FROM candidates ORDER BY rowid").fetchall()
        else:
            rows = self.db.execute("SELECT record FROM candidates WHERE cycle=? ORDER BY rowid", (cycle,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def candidates(self, cycle: int | None = None) -> list[Candidate]:
        """Every evaluated record in the order it was written (or those of one cycle)."""
        return [Candidate.from_json(data) for data in self._records(cycle) if not data.get("failed")]

    def failures(self, cycle: int | None = None) -> list[Failure]:
        """The search candidates that could not be evaluated (or those of one cycle)."""
        return [Failure.from_json(data) for data in self._records(cycle) if data.get("failed")]

    def searched(self) -> list[Candidate]:
        """The search candidates: neither the prototype nor a finalist."""
        return [r for r in self.candidates() if r.searched]

    def save_generator(self, cycle: int, state: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO generator VALUES (?, ?)", (cycle, json.dumps(state)))

    def generator_at(self, cycle: int) -> dict:
        """θG as saved at the start of a cycle (what that cycle's candidates were sampled from)."""
        row = self.db.execute("SELECT state FROM generator WHERE cycle=?", (cycle,)).fetchone()
        return json.loads(row[0])

    def latest_generator(self) -> tuple[int, dict] | None:
        row = self.db.execute("SELECT cycle, state FROM generator ORDER BY cycle DESC LIMIT 1").fetchone()
        return (row[0], json.loads(row[1])) if row else None
