"""HTTP API: job life cycle, cancel, idempotency, 4xx on bad input, token, OpenAPI, metrics."""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from studio.api import Studio
from studio.errors import InsecureBindError
from studio.server import create_app, serve

_spec = importlib.util.spec_from_file_location("toy_jobs", Path(__file__).parent / "test_jobs.py")
toy = importlib.util.module_from_spec(_spec)
sys.modules["toy_jobs"] = toy
_spec.loader.exec_module(toy)


@pytest.fixture()
def studio(tmp_path):
    st = Studio(tmp_path, workers=2, pipelines_override={"toy": toy.TOY})
    st.runner.start()
    yield st
    st.runner.shutdown()


def wait_state(client, jid, states=("succeeded", "failed", "cancelled"), timeout=20.0, **kw):
    end = time.time() + timeout
    while time.time() < end:
        j = client.get(f"/v1/jobs/{jid}", **kw).json()
        if j["state"] in states:
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {jid} stuck in {j['state']}")


def test_job_life_cycle_and_download(studio):
    c = TestClient(create_app(studio))
    assert c.get("/v1/health").json()["ok"] is True
    pipes = {p["name"]: p for p in c.get("/v1/pipelines").json()}
    assert pipes["toy"]["params"]["properties"]["n"]["maximum"] == 1000
    r = c.post("/v1/generate", json={"pipeline": "toy", "params": {"n": 4}})
    assert r.status_code == 202
    j = wait_state(c, r.json()["id"])
    assert j["state"] == "succeeded" and j["progress"] == 1.0
    url = j["results"]["result"]
    body = c.get(url).text
    assert float(body) == 2.0 * sum(range(4))
    assert any(x["id"] == j["id"] for x in c.get("/v1/jobs").json())
    assert c.get("/v1/openapi.json").json()["info"]["title"] == "studio"
    m = c.get("/metrics").text
    assert 'studio_jobs{state="succeeded"} 1.0' in m and "studio_stage_seconds_bucket" in m


def test_cancel_and_idempotency(studio):
    c = TestClient(create_app(studio))
    h = {"Idempotency-Key": "k-1"}
    a = c.post("/v1/generate", json={"pipeline": "toy", "params": {"slow": True}}, headers=h)
    b = c.post("/v1/generate", json={"pipeline": "toy", "params": {"slow": True}}, headers=h)
    assert a.status_code == 202 and b.status_code == 200 and a.json()["id"] == b.json()["id"]
    wait_state(c, a.json()["id"], states=("running",))
    assert c.delete(f"/v1/jobs/{a.json()['id']}").status_code == 200
    assert wait_state(c, a.json()["id"])["state"] == "cancelled"


def test_bad_requests_get_specific_4xx(studio):
    c = TestClient(create_app(studio, submit_rate=4))
    r = c.post("/v1/generate", json={"pipeline": "toy", "params": {"n": "lots"}})
    assert r.status_code == 400 and "'n'" in r.json()["detail"]
    assert c.post("/v1/generate", json={"pipeline": "nope"}).status_code == 400
    assert c.post("/v1/generate", json={"params": {}}).status_code == 422
    assert c.get("/v1/jobs/doesnotexist").status_code == 404
    ok = c.post("/v1/generate", json={"pipeline": "toy", "params": {"n": 2}}).json()
    wait_state(c, ok["id"])
    assert c.get(f"/v1/assets/{ok['id']}/..%2F..%2Fjobs.sqlite").status_code in (400, 404)
    assert c.get(f"/v1/assets/{ok['id']}/jobs.sqlite").status_code == 404
    assert c.post("/v1/generate", json={"pipeline": "toy", "params": {}}).status_code == 202
    assert c.post("/v1/generate", json={"pipeline": "toy", "params": {}}).status_code == 429


def test_token_required_when_set_and_for_public_binds(studio):
    c = TestClient(create_app(studio, token="s3cret"))
    assert c.get("/v1/jobs").status_code == 401
    assert c.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/v1/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    with pytest.raises(InsecureBindError):
        serve(host="0.0.0.0", port=0, token=None, home=studio.home)


def _png(w: int, h: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_photo_upload_is_sanitised_limited_and_queued(tmp_path):
    from dataclasses import dataclass

    from studio.pipeline import Pipeline, Stage
    from studio.uploads import UploadLimits

    @dataclass(frozen=True)
    class CaptureParams:
        photos: str = ""

    def count(p, inputs, ctx):
        files = sorted(x.name for x in Path(p.photos).iterdir())
        (ctx.out_dir / "files.txt").write_text("\n".join(files))
        return {"files": ctx.out_dir / "files.txt"}

    st = Studio(tmp_path, workers=1, pipelines_override={"capture_to_asset": Pipeline("capture_to_asset", CaptureParams, (Stage("count", count, cache=False),))})
    st.runner.start()
    try:
        c = TestClient(create_app(st, upload_limits=UploadLimits(max_files=3, max_file_bytes=50_000, max_image_pixels=100 * 100)))
        ok = c.post("/v1/reconstruct", files=[("files", ("../../evil.png", _png(8, 8), "image/png")),
                                              ("files", ("a\x01b.png", _png(8, 8), "image/png"))])
        assert ok.status_code == 202, ok.text
        j = wait_state(c, ok.json()["id"])
        assert j["state"] == "succeeded"
        names = c.get(j["results"]["files"]).text.split("\n")
        assert len(names) == 2 and "evil.png" in names and all(n.isprintable() and "/" not in n for n in names)
        assert not (tmp_path / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()
        bomb = c.post("/v1/reconstruct", files=[("files", ("big.png", _png(200, 200), "image/png"))])
        assert bomb.status_code == 400 and "pixels" in bomb.json()["detail"]
        junk = c.post("/v1/reconstruct", files=[("files", ("x.png", b"not an image", "image/png"))])
        assert junk.status_code == 400 and "not a readable image" in junk.json()["detail"]
        many = c.post("/v1/reconstruct", files=[("files", (f"{i}.png", _png(4, 4), "image/png")) for i in range(4)])
        assert many.status_code == 413
        big = c.post("/v1/reconstruct", files=[("files", ("n.png", b"\x89PNG" + b"0" * 60_000, "image/png"))])
        assert big.status_code == 413
        assert len(list((tmp_path / "uploads").iterdir())) == 1, "refused uploads leave nothing behind"
        h = {"Idempotency-Key": "photos-1"}
        first = c.post("/v1/reconstruct", headers=h, files=[("files", ("a.png", _png(8, 8), "image/png"))])
        again = c.post("/v1/reconstruct", headers=h, files=[("files", ("a.png", _png(8, 8), "image/png"))])
        assert (first.status_code, again.status_code) == (202, 200) and first.json()["id"] == again.json()["id"]
        assert len(list((tmp_path / "uploads").iterdir())) == 2, "a retried upload is not stored twice"
    finally:
        st.runner.shutdown()


def test_models_listed_and_missing_caption_model_is_503_with_instructions(studio, monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "no_models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    c = TestClient(create_app(studio))
    models = {m["name"]: m for m in c.get("/v1/models").json()}
    assert models["blip-base"]["present"] is False and models["blip-base"]["repo_id"].startswith("Salesforce/")
    from studio.registry import pipelines

    studio.runner.pipelines.update(pipelines())
    pipes = {p["name"]: p for p in c.get("/v1/pipelines").json()}
    assert pipes["demo"]["available"] and not pipes["text_to_image"]["available"]
    assert "stable-diffusion-v1-5" in pipes["text_to_image"]["unavailable_reason"]
    r = c.post("/v1/generate", json={"pipeline": "text_to_image", "params": {"prompt": "a chair"}})
    assert r.status_code == 503 and "hf download" in r.json()["detail"]
    r = c.post("/v1/caption", files={"file": ("x.png", _png(16, 16), "image/png")})
    assert r.status_code == 503 and r.json()["error"] == "ModelUnavailableError"
    assert "Salesforce/blip-image-captioning-base" in r.json()["detail"]


def test_params_naming_programs_are_refused(studio):
    """ns_env names a folder whose bin/ns-train the studio runs: not settable over HTTP."""
    c = TestClient(create_app(studio))
    r = c.post("/v1/generate", json={"pipeline": "toy", "params": {"n": 1, "ns_env": "/tmp"}})
    assert r.status_code == 400 and "STUDIO_NS_ENV" in r.text
