"""Named pipelines. The CLI, HTTP API and web app list and run pipelines from here."""
from __future__ import annotations

from .pipeline import Pipeline


def pipelines() -> dict[str, Pipeline]:
    """All registered pipelines by name (imported lazily so the CLI starts fast)."""
    from studio.pipelines.demo import DEMO

    return {p.name: p for p in (DEMO,)}
