"""The job store: SQLite in WAL mode under $STUDIO_HOME, safe across threads and processes."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  pipeline TEXT NOT NULL,
  params TEXT NOT NULL,
  state TEXT NOT NULL,
  stage TEXT NOT NULL DEFAULT '',
  progress REAL NOT NULL DEFAULT 0,
  message TEXT NOT NULL DEFAULT '',
  error TEXT,
  results TEXT NOT NULL DEFAULT '{}',
  log TEXT NOT NULL DEFAULT '',
  idempotency_key TEXT UNIQUE,
  attempts INTEGER NOT NULL DEFAULT 0,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL,
  started REAL,
  finished REAL,
  updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""


@dataclass
class Job:
    id: str
    pipeline: str
    params: dict[str, Any]
    state: str
    stage: str = ""
    progress: float = 0.0
    message: str = ""
    error: str | None = None
    results: dict[str, str] = field(default_factory=dict)
    log: str = ""
    idempotency_key: str | None = None
    attempts: int = 0
    cancel_requested: int = 0
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    updated: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class JobStore:
    """CRUD on jobs. One connection per thread; WAL lets readers run beside the writer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as c:
            c.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.row_factory = sqlite3.Row
            self._local.conn = c
        return c

    @staticmethod
    def _row(r: sqlite3.Row) -> Job:
        d = dict(r)
        d["params"] = json.loads(d["params"])
        d["results"] = json.loads(d["results"])
        return Job(**d)

    def create(self, pipeline: str, params: dict[str, Any], idempotency_key: str | None = None) -> tuple[Job, bool]:
        """Insert a queued job; with an idempotency key already used, return that job instead.
        Returns (job, created)."""
        if idempotency_key:
            existing = self.by_idempotency_key(idempotency_key)
            if existing:
                return existing, False
        now = time.time()
        jid = uuid.uuid4().hex[:16]
        try:
            self._conn().execute(
                "INSERT INTO jobs (id, pipeline, params, state, idempotency_key, created, updated) VALUES (?,?,?,?,?,?,?)",
                (jid, pipeline, json.dumps(params), "queued", idempotency_key, now, now),
            )
        except sqlite3.IntegrityError:  # lost a race on the same idempotency key
            existing = self.by_idempotency_key(idempotency_key or "")
            assert existing is not None
            return existing, False
        return self.get(jid), True  # type: ignore[return-value]

    def get(self, job_id: str) -> Job | None:
        r = self._conn().execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if r is None else self._row(r)

    def by_idempotency_key(self, key: str) -> Job | None:
        r = self._conn().execute("SELECT * FROM jobs WHERE idempotency_key=?", (key,)).fetchone()
        return None if r is None else self._row(r)

    def list(self, state: str | None = None, limit: int = 100) -> list[Job]:
        q = "SELECT * FROM jobs" + (" WHERE state=?" if state else "") + " ORDER BY created DESC LIMIT ?"
        args = (state, limit) if state else (limit,)
        return [self._row(r) for r in self._conn().execute(q, args).fetchall()]

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns; dict values (results) are stored as JSON; `updated` is stamped."""
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown state {fields['state']}")
        fields["updated"] = time.time()
        for k in ("results", "params"):
            if k in fields:
                fields[k] = json.dumps(fields[k])
        cols = ", ".join(f"{k}=?" for k in fields)
        self._conn().execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def delete(self, job_id: str) -> None:
        """Remove a job's record (its files are the caller's to remove)."""
        self._conn().execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def append_log(self, job_id: str, line: str) -> None:
        self._conn().execute(
            "UPDATE jobs SET log = log || ?, updated=? WHERE id=?", (f"{time.strftime('%H:%M:%S')} {line}\n", time.time(), job_id)
        )

    def claim(self, job_id: str) -> bool:
        """Atomically move a queued job to running; False if someone else got it or it was cancelled."""
        cur = self._conn().execute(
            "UPDATE jobs SET state='running', started=COALESCE(started, ?), attempts=attempts+1, updated=? "
            "WHERE id=? AND state='queued'",
            (time.time(), time.time(), job_id),
        )
        return cur.rowcount == 1

    def requeue_interrupted(self) -> list[str]:
        """Jobs left 'running' by a process that died go back to 'queued'; returns their ids."""
        ids = [r["id"] for r in self._conn().execute("SELECT id FROM jobs WHERE state='running'").fetchall()]
        for jid in ids:
            self._conn().execute("UPDATE jobs SET state='queued', updated=? WHERE id=? AND state='running'", (time.time(), jid))
            self.append_log(jid, "process died while running: requeued, resuming from cached stages")
        return ids

    def counts(self) -> dict[str, int]:
        rows = self._conn().execute("SELECT state, COUNT(*) n FROM jobs GROUP BY state").fetchall()
        return {s: 0 for s in STATES} | {r["state"]: r["n"] for r in rows}

    def count_failed_with(self, text: str) -> int:
        """Failed jobs whose error mentions `text` (the OOM metric counts "OutOfMemoryError")."""
        r = self._conn().execute("SELECT COUNT(*) FROM jobs WHERE state='failed' AND instr(error, ?) > 0", (text,)).fetchone()
        return int(r[0])
