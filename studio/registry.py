"""Named pipelines. The CLI, HTTP API and web app list and run pipelines from here."""
from __future__ import annotations

from .pipeline import Pipeline


def pipelines() -> dict[str, Pipeline]:
    """All registered pipelines by name (imported lazily so the CLI starts fast)."""
    from studio.pipelines.capture_pipeline import CAPTURE
    from studio.pipelines.demo import DEMO
    from studio.pipelines.generate_pipelines import (CAPTION, EXPORT, IMAGE_TO_ASSET, IMAGE_TO_VIDEO, TEXT_TO_IMAGE,
                                                     TEXT_TO_VIDEO)
    from studio.pipelines.text_to_asset import TEXT_TO_ASSET

    builtin = (DEMO, TEXT_TO_ASSET, IMAGE_TO_ASSET, CAPTURE, TEXT_TO_IMAGE, IMAGE_TO_VIDEO, TEXT_TO_VIDEO, CAPTION, EXPORT)
    return {p.name: p for p in builtin} | extra_pipelines()


def availability(pipe: Pipeline) -> tuple[bool, str]:
    """(available, reason): a pipeline whose models are absent is unavailable, with how to provide them."""
    if not pipe.requires:
        return True, ""
    from .errors import ModelUnavailableError
    from .models import resolve

    for name in pipe.requires:
        try:
            resolve(name)
        except ModelUnavailableError as e:
            return False, str(e)
    return True, ""


def extra_pipelines() -> dict[str, Pipeline]:
    """Pipelines from $STUDIO_EXTRA_PIPELINES (os.pathsep-separated module names or .py files):
    every module-level Pipeline there is registered, e.g. the load benchmark's toy pipeline."""
    import importlib
    import importlib.util
    import os
    import sys

    found: dict[str, Pipeline] = {}
    for entry in filter(None, os.environ.get("STUDIO_EXTRA_PIPELINES", "").split(os.pathsep)):
        if entry.endswith(".py"):
            name = "studio_extra_" + os.path.basename(entry)[:-3]
            spec = importlib.util.spec_from_file_location(name, entry)
            if spec is None or spec.loader is None:
                raise ImportError(f"STUDIO_EXTRA_PIPELINES: cannot load {entry}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclass params resolve their annotations through it
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(entry)
        found.update({v.name: v for v in vars(module).values() if isinstance(v, Pipeline)})
    return found
