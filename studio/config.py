"""Where the studio keeps its state: $STUDIO_HOME (default ~/.studio)."""
from __future__ import annotations

import os
from pathlib import Path


def studio_home() -> Path:
    """Root folder for the job store, stage cache and asset library; created on first use."""
    home = Path(os.environ.get("STUDIO_HOME") or Path.home() / ".studio")
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_limit_bytes() -> int:
    """Stage cache size limit: $STUDIO_CACHE_GB (default 20 GB)."""
    return int(float(os.environ.get("STUDIO_CACHE_GB", "20")) * (1 << 30))
