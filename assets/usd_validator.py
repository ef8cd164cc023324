"""Validate USD / USDZ files with usd-core's validation framework (`pxr.UsdValidation`).

usd-core 26 dropped `UsdUtils.ComplianceChecker`; its rules live on as registered validators
(usdGeom, usdShade, usdSkel, usdUtils incl. the USDZ package rules, usdPhysics, usdLux, core
composition/metadata checks). `validate_usd` runs every registered validator on the stage.
"""
from __future__ import annotations

from pathlib import Path

from .validate import ValidationMessage, ValidationReport

_SEVERITY = {"Error": "error", "Warn": "warning", "Info": "info"}


def all_validators() -> list:
    """Every validator registered with usd-core (plugins loaded on demand)."""
    from pxr import UsdValidation

    return list(UsdValidation.ValidationRegistry().GetOrLoadAllValidators())


def _site_pointer(err) -> str:
    out = []
    for site in err.GetSites():
        try:
            if site.IsPrim() or site.IsProperty():
                p = site.GetProperty() if site.IsProperty() else site.GetPrim()
                out.append(str(p.GetPath()))
            elif site.GetLayer():
                out.append(site.GetLayer().identifier)
        except Exception:  # a site without a live prim/layer: skip it
            continue
    return ", ".join(dict.fromkeys(out))


def _report_stage(stage, path: Path, open_messages: list[ValidationMessage]) -> ValidationReport:
    from pxr import UsdValidation

    validators = all_validators()
    ctx = UsdValidation.ValidationContext(validators)
    errors = ctx.Validate(stage)
    rep = ValidationReport(path=str(path), tool=f"usd-core {_usd_version()} UsdValidation ({len(validators)} validators)")
    msgs = list(open_messages)
    for e in errors:
        if e.HasNoError():
            continue
        sev = _SEVERITY.get(str(e.GetType()).rsplit(".", 1)[-1], "warning")
        code = e.GetIdentifier() or e.GetName()
        msgs.append(ValidationMessage(code=str(code), severity=sev, message=e.GetMessage(), pointer=_site_pointer(e)))
    names = sorted(v.GetMetadata().name for v in validators)
    msgs.append(ValidationMessage(code="validators", severity="info",
                                  message=f"ran {len(validators)} validators: {', '.join(names)}"))
    rep.messages = msgs
    rep.errors = sum(m.severity == "error" for m in msgs)
    rep.warnings = sum(m.severity == "warning" for m in msgs)
    rep.infos = sum(m.severity == "info" for m in msgs)
    return rep


def _usd_version() -> str:
    from pxr import Usd

    return ".".join(str(x) for x in Usd.GetVersion()[1:])


def validate_usd(path: str | Path) -> ValidationReport:
    """Run all registered UsdValidation validators on `path` (.usd/.usda/.usdc/.usdz).

    A file usd-core cannot open gives a report with one error (code `UsdOpen`), not an exception.
    The last message (severity info, code `validators`) lists the validators that ran.
    """
    from pxr import Tf, Usd

    path = Path(path)
    if not path.is_file():
        return _failed(path, "UsdOpen", "file not found")
    if path.stat().st_size == 0:
        return _failed(path, "UsdOpen", "file is empty (0 bytes)")
    try:
        stage = Usd.Stage.Open(str(path), Usd.Stage.LoadAll)
    except Tf.ErrorException as exc:
        return _failed(path, "UsdOpen", " ".join(str(exc).split())[:500])
    if stage is None:
        return _failed(path, "UsdOpen", "usd-core could not open the file")
    return _report_stage(stage, path, [])


def _failed(path: Path, code: str, message: str) -> ValidationReport:
    return ValidationReport(path=str(path), tool=f"usd-core {_usd_version()} UsdValidation", errors=1,
                            messages=[ValidationMessage(code=code, severity="error", message=message)])
