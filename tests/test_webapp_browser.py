"""The web app in a real browser (Debian Chromium driven by Playwright): run the demo pipeline
from its tab, watch progress, see the 3D preview, download the GLB and validate it."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(studio_server):
    return studio_server


def test_demo_route_in_browser(server, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    from studio.assets.validate import validate

    url, home = server
    artefacts = Path(os.environ.get("STUDIO_TEST_ARTEFACTS", tmp_path))
    artefacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium[0], args=chromium[1])
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(url + "/", wait_until="load", timeout=120_000)  # Gradio keeps connections open: never "networkidle"
        page.get_by_role("tab", name="Demo").click()
        # Small textures keep the CPU job short.
        page.get_by_label("texture_size — procedural texture size in pixels").fill("64")
        page.get_by_label("splats — Gaussian splats sampled on the surface").fill("500")
        page.get_by_label("turntable_frames — frames of the turntable video").fill("8")
        page.get_by_label("reconstruct — also reconstruct the sample from rendered views (fit → mesh → bake)").uncheck()
        page.locator("#run-demo").click()
        status = page.locator("#status-demo textarea")
        seen = set()
        deadline = time.time() + 240
        while time.time() < deadline:
            text = status.input_value()
            seen.add(text.split(":")[0])
            if text.startswith(("succeeded", "failed", "cancelled", "error")):
                break
            time.sleep(0.2)
        assert text.startswith("succeeded"), text
        # The 3D preview got the GLB (Model3D exposes it through its download link).
        preview = page.locator("#preview-demo [data-testid=model3d-download-link]")
        preview.wait_for(state="attached", timeout=60_000)
        assert preview.get_attribute("href").endswith("/sample.glb")
        assert {"running", "queued"} & seen, f"no progress was shown: {seen}"
        # The thumbnail and the turntable sit beside the preview.
        page.locator("#thumb-demo img").first.wait_for(timeout=30_000)
        page.locator("#turntable-demo video").first.wait_for(state="attached", timeout=30_000)
        page.screenshot(path=str(artefacts / "webapp_demo.png"), full_page=True)
        page.locator("#send-demo").click()
        page.wait_for_function("document.querySelector('#status-demo textarea').value.startsWith('sent to headset')",
                               timeout=30_000)
        import json as _json
        import urllib.request

        scene = _json.load(urllib.request.urlopen(url + "/v1/scene"))
        assert any(a["kind"] == "gltf" for a in scene["assets"]), scene
        link = page.locator('#files-demo a[download="sample.glb"]').first
        with page.expect_download() as dl:
            link.click()
        glb = tmp_path / "downloaded.glb"
        dl.value.save_as(glb)
        browser.close()
    report = validate(glb)
    assert report.ok and report.errors == 0, str(report)
    assert glb.stat().st_size > 10_000


def test_photos_to_3d_upload_in_browser(server, chromium, testdata, tmp_path):
    """Photos → 3D: upload the 3 berlin photos, run capture_to_asset (pycolmap SfM → fit → mesh →
    bake) with small settings, and get a GLB that validates."""
    from playwright.sync_api import sync_playwright

    from studio.assets.validate import validate

    url, home = server
    photos = sorted(str(p) for p in (testdata / "capture/berlin/images").iterdir())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium[0], args=chromium[1])
        page = browser.new_page(viewport={"width": 1280, "height": 1800})
        page.goto(url + "/", wait_until="load", timeout=120_000)  # Gradio keeps connections open: never "networkidle"
        page.get_by_role("tab", name="Photos → 3D").click()
        page.locator("#upload-photos input[type=file]").set_input_files(photos)
        page.wait_for_timeout(1500)  # uploads land before the run
        page.get_by_label("max_size — longest image side used for fitting").filter(visible=True).fill("128")
        page.get_by_label("iterations — splat fit iterations").filter(visible=True).fill("40")
        page.get_by_label("target_faces — faces of the output mesh").filter(visible=True).fill("2000")
        page.get_by_label("bake_size — baked texture size").filter(visible=True).fill("256")
        page.locator("#run-capture_to_asset").click()
        status = page.locator("#status-capture_to_asset textarea")
        deadline = time.time() + 300
        while time.time() < deadline:
            text = status.input_value()
            if text.startswith(("succeeded", "failed", "cancelled", "error")):
                break
            time.sleep(0.3)
        page.screenshot(path=str(tmp_path / "photos_to_3d.png"), full_page=True)
        assert text.startswith("succeeded"), text
        link = page.locator('#files-capture_to_asset a[download="asset.glb"]').first
        with page.expect_download() as dl:
            link.click()
        glb = tmp_path / "asset.glb"
        dl.value.save_as(glb)
        browser.close()
    assert validate(glb).ok
    uploads = list((home / "uploads").iterdir())
    assert any(sorted(p.name for p in u.iterdir()) == ["01.jpg", "02.jpg", "03.jpg"] for u in uploads)
