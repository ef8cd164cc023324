"""Scene stream protocol (studio/scene_stream.py) through FastAPI's TestClient: snapshot + ordered
deltas, lagging clients, reconnects, malformed messages, size limits, uploads and path safety."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from fastapi.testclient import TestClient

from studio.api import Studio
from studio.errors import InvalidAssetError
from studio.scene_stream import MAX_MESSAGE_BYTES, SceneError, SceneState
from studio.server import create_app


def glb_bytes(tmp_path, size: float = 0.2) -> bytes:
    import trimesh

    from studio.assets.io import load, save

    obj = tmp_path / "box.obj"
    trimesh.creation.box(extents=(size, size, size)).export(obj)
    out = tmp_path / "box.glb"
    save(load(obj), out)
    return out.read_bytes()


def splat_ply(tmp_path, n: int = 50):
    from studio.assets.asset import Asset
    from studio.assets.io import save
    from studio.assets.splats import GaussianSplats

    rng = np.random.default_rng(1)
    s = GaussianSplats(means=rng.normal(size=(n, 3)), quats=np.tile([1.0, 0, 0, 0], (n, 1)), log_scales=np.full((n, 3), -4.0),
                       opacity_logits=np.zeros(n), sh=rng.normal(size=(n, 1, 3)))
    p = tmp_path / "cloud.ply"
    save(Asset(splats=s), p)
    return p


@pytest.fixture()
def app(tmp_path):
    studio = Studio(tmp_path / "home")
    a = create_app(studio)
    return a


@pytest.fixture()
def client(app):
    with TestClient(app) as c:
        yield c


def upload(client, data: bytes, name: str, **params):
    return client.post("/v1/scene/push", params={"name": name, **params}, content=data,
                       headers={"Content-Type": "application/octet-stream"})


def test_snapshot_then_ordered_deltas(client, app, tmp_path):
    state: SceneState = app.state.scene
    r = upload(client, glb_bytes(tmp_path), "box.glb")
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    with client.websocket_connect("/v1/scene/ws") as ws:
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and snap["seq"] == 1 and snap["client"]
        (a,) = snap["assets"]
        assert a["id"] == aid and a["kind"] == "gltf" and a["visible"] is True
        assert a["url"].startswith(f"/v1/scene/assets/{aid}/box.glb")
        assert a["transform"] == np.eye(4).flatten().tolist()
        # Python API edits, as a pipeline would make them.
        m = np.eye(4)
        m[:3, 3] = [0.5, 1.0, -2.0]
        m[0, 1] = 0.25  # a shear makes row/column order visible
        state.set_transform(aid, m)
        state.set_material(aid, base_color=(1, 0, 0), metallic=0.2, roughness=0.7, emissive=(0, 0.1, 0))
        state.set_visible(aid, False)
        state.set_environment(background=(0.1, 0.2, 0.3), exposure=1.5)
        sid = state.push_asset(splat_ply(tmp_path))
        state.push_asset(splat_ply(tmp_path, 80), replace=sid)
        state.remove(aid)
        msgs = [ws.receive_json() for _ in range(7)]
    assert [x["seq"] for x in msgs] == list(range(2, 9))
    assert [x["type"] for x in msgs] == ["transform", "material", "visibility", "environment", "asset_added", "asset_replaced", "asset_removed"]
    t = msgs[0]["matrix"]
    assert t[12:15] == [0.5, 1.0, -2.0] and t[4] == 0.25 and t[1] == 0.0  # column-major
    assert msgs[1]["material"] == {"base_color": [1.0, 0.0, 0.0, 1.0], "metallic": 0.2, "roughness": 0.7, "emissive": [0.0, 0.1, 0.0]}
    assert msgs[2]["visible"] is False
    assert msgs[3]["environment"] == {"background": [0.1, 0.2, 0.3], "exposure": 1.5}
    assert msgs[4]["asset"]["kind"] == "splats" and msgs[4]["asset"]["id"] == sid
    assert msgs[5]["asset"]["id"] == sid and msgs[5]["asset"]["rev"] == 2
    assert msgs[6]["id"] == aid
    assert all(x["t"] > 1.6e12 for x in msgs)
    # The removed asset's file is gone; the replaced splat serves the new file.
    assert client.get(a["url"]).status_code == 404
    got = client.get(msgs[5]["asset"]["url"])
    assert got.status_code == 200 and got.content == (state.root / sid / "cloud.ply").read_bytes()
    assert got.content.startswith(b"ply") and b"element vertex 80" in got.content


def test_lagging_client_gets_fresh_snapshot(client, app, tmp_path):
    state: SceneState = app.state.scene
    state.queue_limit = 4
    aid = upload(client, glb_bytes(tmp_path), "box.glb").json()["id"]
    with client.websocket_connect("/v1/scene/ws") as ws:
        first = ws.receive_json()
        assert first["type"] == "snapshot"
        with state.batch():  # 20 deltas land before the client's sender can drain any
            for i in range(20):
                state.set_transform(aid, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, i * 0.01, 0, 0, 1])
        msg = ws.receive_json()
        assert msg["type"] == "snapshot", msg["type"]
        assert msg["seq"] == first["seq"] + 20
        assert msg["assets"][0]["transform"][12] == pytest.approx(0.19)
        state.set_visible(aid, False)
        nxt = ws.receive_json()
        assert nxt["type"] == "visibility" and nxt["seq"] == msg["seq"] + 1
    # A client that keeps up gets every delta, no snapshot.
    state.queue_limit = 64
    with client.websocket_connect("/v1/scene/ws") as ws:
        ws.receive_json()
        with state.batch():
            for i in range(20):
                state.set_transform(aid, np.eye(4))
        types = {ws.receive_json()["type"] for _ in range(20)}
        assert types == {"transform"}


def test_reconnect_gets_current_state(client, app, tmp_path):
    state: SceneState = app.state.scene
    aid = upload(client, glb_bytes(tmp_path), "box.glb").json()["id"]
    with client.websocket_connect("/v1/scene/ws") as ws:
        ws.receive_json()
        state.set_material(aid, roughness=0.1)
        assert ws.receive_json()["type"] == "material"
    assert state.client_count == 0
    # While disconnected the scene moves on.
    state.set_material(aid, base_color=(0, 0, 1, 0.5))
    m = np.eye(4)
    m[:3, 3] = (1, 2, 3)
    state.set_transform(aid, m)
    with client.websocket_connect("/v1/scene/ws") as ws:
        snap = ws.receive_json()
    assert snap["type"] == "snapshot" and snap["seq"] == state.seq
    (a,) = snap["assets"]
    assert a["material"] == {"roughness": 0.1, "base_color": [0.0, 0.0, 1.0, 0.5]}
    assert a["transform"][12:15] == [1.0, 2.0, 3.0]
    # reset drops every override (back to the authored material)
    with client.websocket_connect("/v1/scene/ws") as ws:
        ws.receive_json()
        state.set_material(aid, reset=True)
        d = ws.receive_json()
    assert d["reset"] is True and d["material"] == {} and state.assets[aid].material == {}
    state.set_material(aid, roughness=0.1)
    # And a restarted server (new SceneState on the same folder) still has it.
    state.save()
    again = SceneState(state.root)
    assert again.seq == state.seq and again.assets[aid].transform == a["transform"]


def test_malformed_messages_rejected_connection_survives(client, app, tmp_path):
    state: SceneState = app.state.scene
    aid = upload(client, glb_bytes(tmp_path), "box.glb").json()["id"]
    good = np.eye(4).flatten(order="F").tolist()
    bad = [
        "not json {",
        "[1, 2, 3]",
        json.dumps({"type": "explode"}),
        json.dumps({"type": "transform", "id": aid, "matrix": good[:15]}),
        json.dumps({"type": "transform", "id": aid, "matrix": good[:15] + ["x"]}),
        json.dumps({"type": "transform", "id": aid, "matrix": good[:12] + [float("nan"), 0, 0, 1]}),  # NaN
        json.dumps({"type": "transform", "id": aid, "matrix": [0.0] * 15 + [1.0]}),  # degenerate
        json.dumps({"type": "transform", "id": aid, "matrix": good[:3] + [1.0] + good[4:]}),  # not affine
        json.dumps({"type": "transform", "id": "0123456789ab", "matrix": good}),  # unknown asset
        json.dumps({"type": "transform", "id": aid, "matrix": good, "pad": "x" * MAX_MESSAGE_BYTES}),  # too big
    ]
    with client.websocket_connect("/v1/scene/ws") as ws, client.websocket_connect("/v1/scene/ws") as other:
        me = ws.receive_json()["client"]
        other.receive_json()
        seq0 = state.seq
        for text in bad:
            ws.send_text(text)
            err = ws.receive_json()
            assert err["type"] == "error" and err["detail"], text[:80]
        ws.send_bytes(b"\xff\xfe\x00garbage")
        assert ws.receive_json()["type"] == "error"
        assert state.seq == seq0  # nothing was applied
        # Still connected: a ping is answered, a valid grab transform is broadcast to everyone.
        ws.send_json({"type": "ping", "t": 5})
        assert ws.receive_json() == {"type": "pong", "t": pytest.approx(state.snapshot()["t"], abs=60_000), "echo": 5}
        moved = good[:12] + [0.3, 0.0, -1.0, 1.0]
        ws.send_json({"type": "transform", "id": aid, "matrix": moved})
        for conn in (ws, other):
            d = conn.receive_json()
            assert d["type"] == "transform" and d["matrix"] == moved and d["origin"] == me and d["seq"] == seq0 + 1
    assert state.assets[aid].transform == moved
    # The server is fine too.
    assert client.get("/v1/health").status_code == 200


def test_python_api_rejects_bad_edits(app, tmp_path):
    state: SceneState = app.state.scene
    aid = state.push_asset(splat_ply(tmp_path))
    with pytest.raises(SceneError):
        state.set_material(aid, metallic=1.5)
    with pytest.raises(SceneError):
        state.set_material(aid, base_color=(2, 0, 0))
    with pytest.raises(SceneError):
        state.set_material(aid)
    with pytest.raises(SceneError):
        state.set_transform(aid, np.full((4, 4), np.inf))
    with pytest.raises(SceneError):
        state.set_visible("nope", True)
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"NOTGLTF" * 10)
    with pytest.raises(InvalidAssetError, match="broken.glb"):
        state.push_asset(broken)
    assert list(state.assets) == [aid]


def test_mesh_files_are_converted_to_glb(app, tmp_path):
    import trimesh

    state: SceneState = app.state.scene
    obj = tmp_path / "thing.obj"
    trimesh.creation.icosphere(subdivisions=1, radius=0.1).export(obj)
    aid = state.push_asset(obj)
    a = state.assets[aid]
    assert a.kind == "gltf" and a.file == "thing.glb"
    assert (state.root / aid / "thing.glb").read_bytes()[:4] == b"glTF"


def test_upload_download_glb_and_size_limits(client, app, tmp_path):
    state: SceneState = app.state.scene
    data = glb_bytes(tmp_path)
    # multipart form upload, as a browser would send it
    r = client.post("/v1/scene/push", files={"file": ("my box.glb", data, "model/gltf-binary")})
    assert r.status_code == 201, r.text
    a = r.json()["asset"]
    assert a["name"] == "my_box.glb"
    got = client.get(a["url"])
    assert got.status_code == 200 and got.content == data
    # over the configured limit: refused with 413 and nothing added
    state.max_bytes = len(data) - 1
    for resp in (upload(client, data, "big.glb"),
                 client.post("/v1/scene/push", files={"file": ("big.glb", data, "model/gltf-binary")})):
        assert resp.status_code == 413, resp.text
        assert "limit" in resp.json()["detail"]
    assert len(state.assets) == 1
    assert not [p for p in state.root.iterdir() if p.name.startswith(".")]  # no temp files left behind
    # wrong content for the suffix
    state.max_bytes = 1 << 20
    r = upload(client, b"hello world", "fake.glb")
    assert r.status_code == 400 and "glTF" in r.json()["detail"]
    r = upload(client, b"data", "notes.txt")
    assert r.status_code == 400 and r.json()["error"] == "UnsupportedFormatError"


def test_unsafe_names_refused(client, app, tmp_path):
    state: SceneState = app.state.scene
    home = state.root.parent
    r = upload(client, glb_bytes(tmp_path), "../../evil.glb")
    assert r.status_code == 201
    aid = r.json()["id"]
    assert state.assets[aid].file == "evil.glb"
    assert (state.root / aid / "evil.glb").is_file()
    assert not (home / "evil.glb").exists() and not (home.parent / "evil.glb").exists()
    for path in (f"/v1/scene/assets/{aid}/..%2F..%2Fjobs.sqlite", f"/v1/scene/assets/{aid}/%2Fetc%2Fpasswd",
                 f"/v1/scene/assets/{aid}/%2E%2E", "/v1/scene/assets/..%2F..%2F/jobs.sqlite"):
        resp = client.get(path)
        assert resp.status_code in (400, 404), (path, resp.status_code)
        assert b"SQLite" not in resp.content and b"root:" not in resp.content
    assert client.get(f"/v1/scene/assets/{aid}/..%2F..%2Fjobs.sqlite").json()["error"] == "UnsafePathError"
    assert client.get(f"/v1/scene/assets/{aid}/other.glb").status_code == 404
    assert client.get("/v1/scene/assets/zzzz/evil.glb").status_code == 404


def test_rest_edits_and_token(tmp_path):
    studio = Studio(tmp_path / "home")
    app = create_app(studio, token="s3cret")
    with TestClient(app) as client:
        assert client.get("/v1/scene").status_code == 401
        from starlette.websockets import WebSocketDisconnect

        with pytest.raises(WebSocketDisconnect) as e:
            with client.websocket_connect("/v1/scene/ws") as ws:
                ws.receive_json()
        assert e.value.code == 1008
        h = {"Authorization": "Bearer s3cret"}
        r = client.post("/v1/scene/push", params={"name": "box.glb"}, content=glb_bytes(tmp_path),
                        headers={**h, "Content-Type": "application/octet-stream"})
        aid = r.json()["id"]
        with client.websocket_connect("/v1/scene/ws?token=s3cret") as ws:
            assert ws.receive_json()["assets"][0]["id"] == aid
            r = client.post(f"/v1/scene/{aid}/material", json={"base_color": [1, 0, 0, 1]}, headers=h)
            assert r.status_code == 200
            assert ws.receive_json()["material"] == {"base_color": [1.0, 0.0, 0.0, 1.0]}
            assert client.post(f"/v1/scene/{aid}/material", json={"shininess": 3}, headers=h).status_code == 400
            assert client.post(f"/v1/scene/{aid}/visibility", json={"visible": "no"}, headers=h).status_code == 400
            assert client.post("/v1/scene/0123456789ab/transform", json={"matrix": np.eye(4).flatten().tolist()}, headers=h).status_code == 404
        url = client.get("/v1/scene", headers=h).json()["assets"][0]["url"]
        assert client.get(url).status_code == 401
        assert client.get(url + "&token=s3cret").status_code == 200


def test_xr_client_served(tmp_path, monkeypatch):
    dist = tmp_path / "dist"
    dist.mkdir()
    monkeypatch.setenv("STUDIO_XR_DIST", str(dist))
    with TestClient(create_app(Studio(tmp_path / "h1"))) as c:
        r = c.get("/xr/")
        assert r.status_code == 503 and "npm ci" in r.text
    (dist / "index.html").write_text("<html>xr client</html>")
    with TestClient(create_app(Studio(tmp_path / "h2"))) as c:
        r = c.get("/xr?emulate=1", follow_redirects=False)
        assert r.status_code in (302, 307) and r.headers["location"] == "/xr/?emulate=1"
        assert c.get("/xr/").text == "<html>xr client</html>"


def test_push_client_reports_unreachable_server(tmp_path):
    from studio.xr_push import XRPushError, push

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    glb = tmp_path / "a.glb"
    glb.write_bytes(glb_bytes(tmp_path))
    with pytest.raises(XRPushError, match="cannot reach"):
        push(glb, server=f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(InvalidAssetError):
        push(tmp_path / "missing.glb", server=f"http://127.0.0.1:{port}")


def test_push_a_job_result(client, app, tmp_path):
    """"Send to headset" of a finished job's result by reference, without re-uploading it."""
    studio = app.state.studio
    job, _ = studio.store.create("demo", {})
    out = studio.home / "results" / job.id
    out.mkdir(parents=True)
    (out / "sample.glb").write_bytes(glb_bytes(tmp_path))
    studio.store.update(job.id, state="succeeded", results={"glb": str(out / "sample.glb")})
    r = client.post("/v1/scene/push", json={"job": job.id, "result": "glb"})
    assert r.status_code == 201, r.text
    a = r.json()["asset"]
    assert a["kind"] == "gltf" and client.get(a["url"]).content == (out / "sample.glb").read_bytes()
    assert client.post("/v1/scene/push", json={"job": job.id, "result": "usd"}).status_code == 400
    assert client.post("/v1/scene/push", json={"job": "nope"}).status_code == 400


def test_cross_origin_and_flooding_refused(client, app, tmp_path, monkeypatch):
    import studio.scene_stream as ss
    from starlette.websockets import WebSocketDisconnect

    data = glb_bytes(tmp_path)
    evil = {"Origin": "http://evil.example"}
    r = client.post("/v1/scene/push", params={"name": "x.glb"}, content=data,
                    headers={**evil, "Content-Type": "application/octet-stream"})
    assert r.status_code == 403 and not app.state.scene.assets
    with pytest.raises(WebSocketDisconnect) as e:
        with client.websocket_connect("/v1/scene/ws", headers=evil) as ws:
            ws.receive_json()
    assert e.value.code == 1008
    # the same host as Origin (the /xr/ page itself) is fine
    with client.websocket_connect("/v1/scene/ws", headers={"Origin": "http://testserver"}) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        monkeypatch.setattr(ss, "MAX_CLIENT_MESSAGES_PER_S", 5)
        for i in range(12):
            ws.send_json({"type": "ping", "t": i})
        replies = [ws.receive_json() for _ in range(12)]
    assert [r["type"] for r in replies[:5]] == ["pong"] * 5
    assert any(r["type"] == "error" and "per second" in r["detail"] for r in replies[5:])
