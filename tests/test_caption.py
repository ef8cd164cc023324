"""Captioning on a tiny random BlipForConditionalGeneration (+ BlipProcessor with an offline
WordPiece tokenizer) saved by the test as `$STUDIO_MODELS/blip-base`, and a tiny
LlavaForConditionalGeneration as `$STUDIO_MODELS/llava-1.5-7b`, so the built-in names resolve
offline exactly as real weights would. The words are noise; the tests check types, determinism,
that the image matters, the metadata written into assets (and kept through a GLB round trip),
the orbit cameras and the error paths."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import trimesh  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers (pytest runs with --import-mode=importlib)
from tiny_models import save_tiny_blip, save_tiny_llava, single_thread  # noqa: E402

from studio.assets.asset import Asset  # noqa: E402
from studio.assets.material import Material  # noqa: E402
from studio.assets.mesh import Mesh  # noqa: E402
from studio.errors import EmptyResultError, ModelUnavailableError  # noqa: E402
from studio.models import PipelineCache  # noqa: E402
from studio.pipelines.caption import (caption_asset, caption_image, caption_path, orbit_cameras,  # noqa: E402
                                      tags_from_captions)

CACHE = PipelineCache()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_vlm")
    save_tiny_llava(root / "llava-1.5-7b")  # beside it: $STUDIO_MODELS/llava-1.5-7b
    return save_tiny_blip(root / "blip-base")


@pytest.fixture(autouse=True)
def studio_env(tmp_path, monkeypatch, blip):
    import huggingface_hub.constants as hfc

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_MODELS", str(blip.parent))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")


def solid(rgb, size=48) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (size, size, 3)).copy()


def box_asset(colour=(0.8, 0.2, 0.1, 1.0), centre=(1.0, 2.0, -0.5)) -> Asset:
    box = trimesh.creation.box(extents=(1.0, 0.5, 0.8))
    box.apply_translation(centre)
    return Asset(meshes=[Mesh.from_arrays(box.vertices, box.faces, material=Material(base_color_factor=colour))])


def test_caption_image_is_deterministic_text_that_depends_on_the_image():
    red, blue = solid((220, 30, 20)), solid((20, 40, 220))
    a = caption_image(red, cache=CACHE)
    assert isinstance(a, str) and a.strip() == a and len(a.split()) >= 2
    assert caption_image(red, cache=CACHE) == a
    assert caption_image(blue, cache=CACHE) != a
    assert [v for k, v in CACHE.loads.items() if k[0] == "transformers"] == [1]  # warm after the first load
    rgba = np.concatenate([red, np.full((48, 48, 1), 255, np.uint8)], axis=2)
    assert caption_image(rgba, cache=CACHE) == a  # alpha is dropped


def test_question_is_the_caption_prefix():
    text = caption_image(solid((200, 200, 200)), question="a photo of", cache=CACHE)
    assert text.startswith("a photo of ") and len(text) > len("a photo of ")


def test_llava_answers_questions_through_its_chat_template():
    q = "what material is this?"
    red, blue = solid((220, 30, 20)), solid((20, 40, 220))
    a = caption_image(red, model="llava-1.5-7b", question=q, cache=CACHE)
    assert isinstance(a, str) and len(a.split()) >= 2
    assert "ASSISTANT" not in a and "material" not in a  # only the newly generated answer
    assert caption_image(red, model="llava-1.5-7b", question=q, cache=CACHE) == a
    assert caption_image(blue, model="llava-1.5-7b", question=q, cache=CACHE) != a
    assert caption_image(red, model="llava-1.5-7b", cache=CACHE)  # default question


def test_caption_path_reads_image_files(tmp_path):
    from PIL import Image

    p = tmp_path / "red.png"
    Image.fromarray(solid((220, 30, 20))).save(p)
    res = caption_path(p)
    assert res.caption == caption_image(solid((220, 30, 20)), cache=CACHE)
    assert res.captions == [res.caption]


def test_caption_asset_renders_four_views_and_stores_metadata(tmp_path):
    from studio.assets.io import load, save

    asset = box_asset()
    res = caption_asset(asset, size=64, cache=CACHE)
    assert len(res.captions) == 4 and all(isinstance(c, str) and c for c in res.captions)
    assert asset.metadata.caption == res.caption and res.caption in res.captions
    assert asset.metadata.extras["captions"] == res.captions
    assert asset.metadata.extras["tags"] == res.tags and asset.metadata.extras["caption_model"] == "blip-base"
    words = set(re.findall(r"[a-z][a-z-]+", " ".join(res.captions).lower()))
    assert all(t in words for t in res.tags)
    again = box_asset()
    assert caption_asset(again, size=64, cache=CACHE).captions == res.captions  # deterministic end to end
    out = save(asset, tmp_path / "captioned.glb")  # metadata travels into the GLB (asset extras)
    back = load(out)
    assert back.metadata.caption == res.caption
    assert list(back.metadata.extras["tags"]) == res.tags


def test_caption_asset_orbits_the_bounds_and_captions_each_view():
    asset = box_asset()
    seen = {}
    colours = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (240, 240, 240)]

    def renderer(a, cameras):
        seen["cameras"] = cameras
        rgb = np.stack([solid(c, cameras.width) for c in colours])
        return type("R", (), {"rgb": rgb})()

    progress = []
    res = caption_asset(asset, renderer=renderer, size=96, progress=lambda f, m: progress.append(f), cache=CACHE)
    cams = seen["cameras"]
    assert len(cams.cam_to_world) == 4 and cams.width == cams.height == 96
    centre = asset.bounds().mean(axis=0)
    eyes = cams.cam_to_world[:, :3, 3]
    dist = np.linalg.norm(eyes - centre, axis=1)
    assert np.allclose(dist, dist[0])
    forward = cams.cam_to_world[:, :3, 2]  # OpenCV +z looks at the centre
    assert np.allclose(forward, (centre - eyes) / dist[:, None], atol=1e-9)
    assert res.captions == [caption_image(solid(c, 96), cache=CACHE) for c in colours]
    assert progress[-1] == 1.0 and len(progress) == 5


def test_errors_empty_asset_and_missing_model(tmp_path, monkeypatch):
    with pytest.raises(EmptyResultError):
        caption_asset(Asset(), cache=CACHE)
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "no-models"))
    with pytest.raises(ModelUnavailableError, match="Salesforce/blip-image-captioning-base"):
        caption_image(solid((1, 2, 3)), cache=CACHE)
    with pytest.raises(ModelUnavailableError, match="llava-hf/llava-1.5-7b-hf"):
        caption_image(solid((1, 2, 3)), model="llava-1.5-7b", question="what material is this?", cache=CACHE)
    with pytest.raises(ModelUnavailableError, match="Salesforce/blip-vqa-base"):
        caption_image(solid((1, 2, 3)), model="blip-vqa", question="what colour?", cache=CACHE)


def test_tags_and_orbit_helpers():
    assert tags_from_captions(["a red wooden chair", "the red chair on a white floor"]) == ["red", "chair", "wooden", "floor"]
    cams = orbit_cameras(np.array([[-1.0, -1, -1], [1, 1, 1]]), views=6, size=32)
    assert len(cams.cam_to_world) == 6 and np.allclose(np.linalg.norm(cams.cam_to_world[:, :3, 3], axis=1), 1.1 * np.sqrt(3) / np.sin(np.radians(20)))
