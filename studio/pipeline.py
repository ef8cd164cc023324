"""Pipelines: named chains of stages with one typed params dataclass.

A Stage is a plain function `fn(params, inputs: dict[str, Any], ctx: StageContext) -> Any`
plus a name and a version. Its cache key covers the stage name, version, the params fields it
declares (all by default) and the keys of the stages it reads, so an upstream change
invalidates everything downstream and an unchanged re-run is cache hits only.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CancelledError, StudioError


class ParamsError(StudioError):
    """Job parameters do not match the pipeline's schema; the message names the field."""

    exit_code = 2


@dataclass
class StageContext:
    """What a running stage may use: progress reporting, cancellation and the job's output folder."""

    out_dir: Path
    report: Callable[[float, str], None] = lambda f, m: None
    is_cancelled: Callable[[], bool] = lambda: False

    def progress(self, fraction: float, message: str = "") -> None:
        """Report stage progress in [0,1]; raises CancelledError if the job was cancelled."""
        self.check_cancel()
        self.report(max(0.0, min(1.0, float(fraction))), message)

    def check_cancel(self) -> None:
        if self.is_cancelled():
            raise CancelledError("job cancelled")


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[Any, dict[str, Any], StageContext], Any]
    version: str = "1"
    inputs: tuple[str, ...] = ()
    params: tuple[str, ...] | None = None  # params fields the output depends on; None = all
    cache: bool = True  # False for cheap stages that write job files (export)
    weight: float = 1.0  # share of the job's progress bar
    gpu: bool = False  # needs a GPU: the Ray backend requests one for this stage's task


@dataclass(frozen=True)
class Pipeline:
    name: str
    params_type: type
    stages: tuple[Stage, ...]
    description: str = ""
    requires: tuple[str, ...] = ()  # model names from the registry
    title: str = ""  # what people call it (web app tab); defaults to the name

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for s in self.stages:
            missing = [i for i in s.inputs if i not in seen]
            if missing:
                raise ValueError(f"pipeline {self.name}: stage {s.name} reads {missing} before they are produced")
            seen.add(s.name)


# ---- params: one dataclass → schema, parsing, CLI options ---------------------------------


def _base_type(tp: Any) -> tuple[type, bool]:
    """(underlying type, optional?) of an annotation like `int | None`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])[0], True
    if typing.get_origin(tp) is typing.Literal:
        return str, False
    return (tp if isinstance(tp, type) else str), False


def params_schema(cls: type) -> dict:
    """JSON schema (draft 2020-12 subset) of a params dataclass."""
    hints = typing.get_type_hints(cls)
    props, required = {}, []
    names = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "string"}
    for f in dataclasses.fields(cls):
        tp, optional = _base_type(hints[f.name])
        p: dict[str, Any] = {"type": names.get(tp, "string")}
        if typing.get_origin(hints[f.name]) is typing.Literal:
            p["enum"] = list(typing.get_args(hints[f.name]))
        if f.metadata.get("help"):
            p["description"] = f.metadata["help"]
        for k in ("minimum", "maximum"):
            if k in f.metadata:
                p[k] = f.metadata[k]
        if f.default is not dataclasses.MISSING:
            p["default"] = str(f.default) if isinstance(f.default, Path) else f.default
        else:
            required.append(f.name)
        if optional:
            p = {"anyOf": [p, {"type": "null"}]} | ({"default": p["default"]} if "default" in p else {})
        props[f.name] = p
    return {"title": cls.__name__, "type": "object", "properties": props, "required": required, "additionalProperties": False}


def parse_params(cls: type, data: dict[str, Any] | None) -> Any:
    """Coerce and check a dict into the params dataclass; ParamsError names the offending field."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(f"unknown parameter(s) {unknown}; allowed: {sorted(fields)}")
    kw = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParamsError(f"missing required parameter '{name}'")
            continue
        value = data[name]
        tp, optional = _base_type(hints[name])
        if value is None:
            if not optional:
                raise ParamsError(f"parameter '{name}' may not be null")
            kw[name] = None
            continue
        try:
            if tp is bool:
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    value = value.lower() in ("true", "1", "yes")
                elif not isinstance(value, bool):
                    raise ValueError(value)
            elif tp is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError(value)
                value = int(value)
            elif tp is float:
                if isinstance(value, bool):
                    raise ValueError(value)
                value = float(value)
            elif tp is Path:
                value = Path(str(value))
            elif tp is str:
                if not isinstance(value, str):
                    raise ValueError(value)
        except (TypeError, ValueError):
            raise ParamsError(f"parameter '{name}' must be {tp.__name__}, got {value!r}") from None
        lit = typing.get_args(hints[name]) if typing.get_origin(hints[name]) is typing.Literal else None
        if lit and value not in lit:
            raise ParamsError(f"parameter '{name}' must be one of {list(lit)}, got {value!r}")
        if "minimum" in f.metadata and value < f.metadata["minimum"]:
            raise ParamsError(f"parameter '{name}' must be >= {f.metadata['minimum']}, got {value}")
        if "maximum" in f.metadata and value > f.metadata["maximum"]:
            raise ParamsError(f"parameter '{name}' must be <= {f.metadata['maximum']}, got {value}")
        kw[name] = value
    return cls(**kw)


# Params that name programs the studio would execute (nerfstudio's ns-train in ns_env): the CLI and the
# Python API may set them; the HTTP API refuses them and web forms leave them out (the server's
# environment, e.g. STUDIO_NS_ENV, provides them there).
LOCAL_ONLY_PARAMS = frozenset({"ns_env"})


def param(default: Any = dataclasses.MISSING, help: str = "", **limits: Any) -> Any:
    """A params field with help text and optional minimum/maximum (used by CLI, API and forms)."""
    return field(default=default, metadata={"help": help, **limits})


def params_to_dict(params: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(params).items()}
