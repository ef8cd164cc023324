"""Content-addressed stage cache: key = hash(stage name, version, params, input hashes).

Each entry is a folder `<root>/<key[:2]>/<key>/` holding `value.pkl` (the stage output) and
`meta.json`; it is written into a temporary folder and renamed into place, so a killed process
never leaves a half entry. Entries are evicted least-recently-used (access time kept in
meta.json's sibling `atime` file) when the cache grows past its size limit.

The cache holds the studio's own outputs on the local disk (a trusted store), so entries are
pickled; nothing from the network is ever unpickled.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def stable_hash(obj: Any) -> str:
    """SHA-256 of a canonical encoding of params / values (dataclasses, dicts, arrays, paths...)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(repr((type(obj).__name__, obj)).encode())
    elif isinstance(obj, bytes):
        h.update(b"bytes:" + hashlib.sha256(obj).digest())
    elif isinstance(obj, np.ndarray):
        h.update(f"nd:{obj.dtype}:{obj.shape}:".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Path):
        h.update(b"path:" + str(obj).encode())
        if obj.is_file():
            h.update(file_digest(obj).encode())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"dc:{type(obj).__qualname__}".encode())
        for f in dataclasses.fields(obj):
            h.update(f.name.encode())
            _feed(h, getattr(obj, f.name))
    elif isinstance(obj, dict):
        h.update(b"dict")
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq{len(obj)}".encode())
        for x in obj:
            _feed(h, x)
    elif hasattr(obj, "__dict__"):
        h.update(f"obj:{type(obj).__qualname__}".encode())
        _feed(h, vars(obj))
    else:
        h.update(pickle.dumps(obj, protocol=5))


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class CacheStats:
    entries: int
    bytes: int
    limit_bytes: int
    hits: int
    misses: int


class StageCache:
    """A size-bounded, content-addressed store of stage outputs under `root`."""

    def __init__(self, root: str | Path, limit_bytes: int = 20 << 30):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.limit_bytes = limit_bytes
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._approx_bytes: int | None = None  # running size estimate; None until first scanned

    @staticmethod
    def key(stage: str, version: str | int, params: Any, input_hashes: list[str]) -> str:
        return stable_hash(("stage", stage, str(version), params, list(input_hashes)))

    def _dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def has(self, key: str) -> bool:
        return (self._dir(key) / "value.pkl").is_file()

    def get(self, key: str) -> tuple[bool, Any]:
        """(hit, value). A corrupt entry counts as a miss and is removed."""
        d = self._dir(key)
        try:
            with open(d / "value.pkl", "rb") as f:
                value = pickle.load(f)
        except FileNotFoundError:
            self.misses += 1
            return False, None
        except Exception:  # corrupt entry: drop it, recompute
            shutil.rmtree(d, ignore_errors=True)
            self.misses += 1
            return False, None
        (d / "atime").write_text(repr(time.time()))
        self.hits += 1
        return True, value

    def put(self, key: str, value: Any, meta: dict | None = None) -> None:
        """Store `value` under `key` atomically (temp folder + rename), then evict to the limit."""
        d = self._dir(key)
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}.", dir=d.parent))
        try:
            with open(tmp / "value.pkl", "wb") as f:
                pickle.dump(value, f, protocol=5)
                f.flush()
                os.fsync(f.fileno())
            (tmp / "meta.json").write_text(json.dumps(meta or {}, default=str))
            (tmp / "atime").write_text(repr(time.time()))
            try:
                os.rename(tmp, d)
            except OSError:  # already there (another worker won the race): keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # Scanning every entry is O(entries): do it only when a running estimate says we may be over.
        with self._lock:
            if self._approx_bytes is None:
                self._approx_bytes = sum(s for _, s, _ in self._entries())
            else:
                self._approx_bytes += sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            over = self._approx_bytes > self.limit_bytes
        if over:
            self.evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for d in sub.iterdir():
                if d.name.startswith(".") or not d.is_dir():
                    continue
                size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
                try:
                    at = float((d / "atime").read_text())
                except (OSError, ValueError):
                    at = 0.0
                out.append((at, size, d))
        return out

    def evict(self) -> int:
        """Remove least-recently-used entries until the cache fits its limit; returns entries removed."""
        with self._lock:
            entries = self._entries()
            total = sum(s for _, s, _ in entries)
            removed = 0
            for at, size, d in sorted(entries, key=lambda e: e[0]):
                if total <= self.limit_bytes:
                    break
                shutil.rmtree(d, ignore_errors=True)
                total -= size
                removed += 1
            self._approx_bytes = total
            return removed

    def stats(self) -> CacheStats:
        entries = self._entries()
        return CacheStats(len(entries), sum(s for _, s, _ in entries), self.limit_bytes, self.hits, self.misses)

    def clear(self) -> int:
        n = len(self._entries())
        for sub in self.root.iterdir():
            shutil.rmtree(sub, ignore_errors=True)
        return n
