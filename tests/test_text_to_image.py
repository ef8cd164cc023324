"""Text → image on a tiny random Stable-Diffusion-1.x-architecture pipeline built and saved by the
test (UNet2DConditionModel + AutoencoderKL + 2-layer CLIP text encoder + BPE tokenizer + DDIM),
loaded through the registry like real weights. 32 px, 2 steps: outputs are noise, so the tests
check shapes, determinism, that every conditioning changes the output, exact identities,
progress, cancellation, the warm cache and the error paths."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers (pytest runs with --import-mode=importlib)
from tiny_models import (save_tiny_controlnet, save_tiny_ip_adapter, save_tiny_lora, save_tiny_sd,  # noqa: E402
                         save_tiny_sd3, save_tiny_sdxl, single_thread)

from studio.errors import BlockedContentError, CancelledError, ModelUnavailableError  # noqa: E402
from studio.models import PipelineCache, register  # noqa: E402
from studio.pipeline import ParamsError  # noqa: E402
from studio.pipelines import generation_common as gc  # noqa: E402
from studio.pipelines.text_to_image import (SCHEDULERS, ControlNetRef, IPAdapterRef, LoraRef,  # noqa: E402
                                            TextToImageParams,
                                            generate_image_files, generate_images, text_to_image)

CACHE = PipelineCache()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("tiny_sd")
    sd = save_tiny_sd(root / "sd")
    return {
        "root": root,
        "sd": sd,
        "controlnet": save_tiny_controlnet(root / "controlnet", sd),
        "lora_a": save_tiny_lora(root / "lora_a", sd, seed=5),
        "lora_b": save_tiny_lora(root / "lora_b", sd, seed=6),
        "ip_adapter": save_tiny_ip_adapter(root / "ip_adapter", sd),
    }


@pytest.fixture(autouse=True)
def studio_env(tmp_path, monkeypatch, tiny):
    """Models come from $STUDIO_MODELS/<name> (the tiny SD is placed there as 'tiny-sd'); empty HF cache."""
    import huggingface_hub.constants as hfc

    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny-sd").symlink_to(tiny["sd"], target_is_directory=True)
    (models / "ip-adapter").symlink_to(tiny["ip_adapter"], target_is_directory=True)  # the built-in name
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_MODELS", str(models))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("STUDIO_BLOCKLIST", raising=False)
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    register("tiny-sd", tiny["sd"])  # a user-registered checkpoint folder, resolved by name


def params(**kw) -> TextToImageParams:
    base = dict(prompt="a red chair", model="tiny-sd", steps=2, width=32, height=32, seed=1, guidance_scale=1.0)
    return TextToImageParams(**(base | kw))


def run(**kw) -> np.ndarray:
    return text_to_image(params(**kw), cache=CACHE)[0]


_BASE: dict[str, np.ndarray] = {}


def base_image() -> np.ndarray:
    if "ddim" not in _BASE:
        _BASE["ddim"] = run()
    return _BASE["ddim"]


def test_shapes_seeds_batch_and_warm_cache():
    p = params(num_images=2, guidance_scale=7.5, negative_prompt="blurry")
    a = generate_images(p, cache=CACHE)
    assert len(a.images) == 2 and a.seeds == [1, 2]
    for im in a.images:
        assert im.shape == (32, 32, 3) and im.dtype == np.uint8
    assert a.record["seed"] == 1 and a.record["prompt"] == "a red chair" and a.record["negative_prompt"] == "blurry"
    assert a.watermarked == [False, False] and a.record["watermark_id"] is None and a.record["watermark"] is True  # < 256 px: not embeddable
    b = generate_images(p, cache=CACHE)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))  # same seed → identical
    assert np.abs(a.images[0].astype(int) - a.images[1]).mean() > 5  # another seed → different
    # image i is seed+i: generated alone it matches (batched BLAS may differ by one level)
    c = generate_images(params(seed=2, guidance_scale=7.5, negative_prompt="blurry"), cache=CACHE)
    assert np.abs(c.images[0].astype(int) - a.images[1]).max() <= 2
    loads = [v for k, v in CACHE.loads.items() if k[0] == "diffusers"]
    assert loads == [1]  # three jobs, one load: the pipeline stayed warm
    drawn = generate_images(params(seed=None), cache=CACHE)
    assert drawn.record["seed"] == drawn.seeds[0]  # a drawn seed is reported, so the image is reproducible
    assert np.array_equal(run(seed=drawn.seeds[0]), drawn.images[0])


def test_every_scheduler_runs_and_changes_the_output():
    ref = base_image()  # the model's own scheduler (DDIM)
    outs = {}
    for name in SCHEDULERS:
        outs[name] = run(scheduler=name)
        assert outs[name].shape == (32, 32, 3)
    assert np.array_equal(outs["ddim"], ref)
    for name in SCHEDULERS:
        if name != "ddim":
            assert not np.array_equal(outs[name], ref), name
    assert np.array_equal(run(), ref)  # the job-local scheduler did not leak into the warm pipeline
    with pytest.raises(ParamsError, match="scheduler"):
        run(scheduler="plms")


def test_loras_change_output_stack_and_unload(tiny):
    ref = base_image()
    register("style-a", tiny["lora_a"], kind="lora")
    one = run(loras=[("style-a", 1.0)])
    assert np.abs(one.astype(int) - ref).mean() > 1
    two = run(loras=[LoraRef("style-a", 1.0), LoraRef(str(tiny["lora_b"]), 0.7)])
    assert not np.array_equal(two, one)
    half = run(loras=[("style-a", 0.3)])
    assert not np.array_equal(half, one)  # the scale is applied
    assert np.array_equal(run(), ref)  # unloaded: the warm pipeline is back to the base weights
    register("xl-style", tiny["lora_a"], kind="lora", base="sdxl")
    with pytest.raises(ParamsError, match="is for sdxl"):
        run(loras=[("xl-style", 1.0)])


def test_img2img_strength_zero_is_identity_and_size_follows_input():
    init = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    same = run(init_image=init, strength=0.0)
    assert np.array_equal(same, init)
    seen = []
    out = text_to_image(params(init_image=init, strength=0.5, steps=4), progress=lambda f, m: seen.append((f, m)), cache=CACHE)[0]
    assert seen[1:] == [(0.5, "denoising step 1/2"), (1.0, "denoising step 2/2")]  # 4 steps × strength 0.5
    assert out.shape == init.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - init).mean() > 5


def test_inpainting_keeps_unmasked_pixels_exactly():
    init = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 4:20] = True
    out = run(init_image=init, mask=mask, strength=1.0)
    assert np.array_equal(out[~mask], init[~mask])
    assert (out[mask] != init[mask]).any(axis=-1).mean() > 0.9
    with pytest.raises(ParamsError, match="needs an init_image"):
        run(mask=mask)


def test_controlnet_conditioning_is_applied(tiny):
    ref = base_image()
    ctrl = np.zeros((32, 32, 3), np.uint8)
    ctrl[:, 16:] = 255  # e.g. a depth/edge map
    a = run(controlnet=ControlNetRef(str(tiny["controlnet"]), ctrl))
    assert a.shape == (32, 32, 3) and np.abs(a.astype(int) - ref).mean() > 1
    b = run(controlnet=ControlNetRef(str(tiny["controlnet"]), 255 - ctrl))
    assert not np.array_equal(a, b)  # the control image itself matters
    assert np.array_equal(run(), ref)


def test_ip_adapter_image_prompt_is_applied_and_removed():
    ref = base_image()
    # built-in "ip-adapter" → $STUDIO_MODELS/ip-adapter/models/ip-adapter_sd15.safetensors + models/image_encoder
    a = run(ip_adapter=IPAdapterRef("ip-adapter", np.full((40, 40, 3), 200, np.uint8), scale=1.0))
    assert np.abs(a.astype(int) - ref).mean() > 0.5
    b = run(ip_adapter=IPAdapterRef("ip-adapter", np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8), scale=1.0))
    assert not np.array_equal(a, b)  # the prompt image matters
    assert np.array_equal(run(), ref)  # unloaded after the job


def test_progress_per_step_and_cancel_between_steps():
    seen: list[tuple[float, str]] = []
    text_to_image(params(steps=3), progress=lambda f, m: seen.append((f, m)), cache=CACHE)
    steps = [f for f, m in seen if "step" in m]
    assert steps == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert seen[0][0] == 0.0 and [m for _, m in seen][-1] == "denoising step 3/3"

    calls: list[float] = []
    with pytest.raises(CancelledError):
        text_to_image(params(steps=3), progress=lambda f, m: calls.append(f), cancel=lambda: len(calls) >= 2, cache=CACHE)
    assert calls == pytest.approx([0.0, 1 / 3])  # stopped after the first denoising step
    assert np.array_equal(run(), base_image())  # the warm pipeline is intact after a cancel
    with pytest.raises(CancelledError):
        text_to_image(params(), cancel=lambda: True, cache=CACHE)


def test_missing_models_raise_with_repo_id_and_no_image():
    with pytest.raises(ModelUnavailableError) as e:
        text_to_image(params(model="sd15"), cache=CACHE)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in str(e.value) and "hf download" in str(e.value)
    n = sum(CACHE.loads.values())
    with pytest.raises(ModelUnavailableError, match="lllyasviel/control_v11f1p_sd15_depth"):
        text_to_image(params(controlnet=ControlNetRef("controlnet-depth", np.zeros((32, 32, 3), np.uint8))), cache=CACHE)
    with pytest.raises(ModelUnavailableError, match="latent-consistency/lcm-lora-sdv1-5"):
        text_to_image(params(loras=[("lcm-lora", 1.0)]), cache=CACHE)
    assert sum(CACHE.loads.values()) == n  # nothing was loaded before failing


def test_blocked_prompts_raise_the_specific_error(tmp_path, monkeypatch):
    with pytest.raises(BlockedContentError, match="blocklist"):
        run(prompt="CSAM   of someone")
    rules = tmp_path / "blocklist.txt"
    rules.write_text("# studio rules\nred chair\n/gore+/\n")
    monkeypatch.setenv("STUDIO_BLOCKLIST", str(rules))
    with pytest.raises(BlockedContentError, match="red chair"):
        run(prompt="A RED  chair in a room")
    with pytest.raises(BlockedContentError):
        run(prompt="lots of goreee")
    gc.check_prompt("a redchair", "bored")  # whole words only: no false positives
    with pytest.raises(BlockedContentError, match="safety checker"):
        gc.check_output_safety([False, True])
    assert BlockedContentError("x").exit_code == 10


def test_watermark_detected_in_generated_images_only():
    from PIL import Image

    p = params(width=256, height=256, steps=1)
    batch = generate_images(p, cache=CACHE)
    assert batch.watermarked == [True] and batch.record["watermark_id"] == gc.WATERMARK_ID
    assert gc.detect_watermark(batch.images[0])
    plain = text_to_image(params(width=256, height=256, steps=1, watermark=False), cache=CACHE)[0]
    assert not gc.detect_watermark(plain)
    assert np.abs(plain.astype(int) - batch.images[0]).mean() < 10  # a small change
    # a textured image (DWT-DCT cannot hide bits in flat areas: very smooth images stay undetectable)
    photo = np.asarray(Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8))
                       .resize((256, 256), Image.BICUBIC))
    assert not gc.detect_watermark(photo)
    marked, ok = gc.embed_watermark(photo)
    assert ok and gc.detect_watermark(marked)
    small, ok = gc.embed_watermark(photo[:128, :128])
    assert not ok and np.array_equal(small, photo[:128, :128])


def test_files_carry_parameters_and_sizes_are_checked(tmp_path):
    from PIL import Image

    paths = generate_image_files(params(num_images=2, seed=7), tmp_path / "out", stem="chair")
    assert [p.name for p in paths] == ["chair_0.png", "chair_1.png"]
    with Image.open(paths[1]) as im:
        meta = json.loads(im.text["parameters"])
        pixels = np.asarray(im.convert("RGB"))
    assert meta["seed"] == 8 and meta["index"] == 1 and meta["model"] == "tiny-sd" and meta["steps"] == 2
    assert pixels.shape == (32, 32, 3)
    with pytest.raises(ParamsError, match="multiple of 8"):
        run(width=36)
    with pytest.raises(ParamsError, match="prompt"):
        run(prompt="  ")


def test_sd3_family_is_selected_from_model_index(tmp_path_factory):
    """A flow-matching MMDiT (StableDiffusion3Pipeline, no T5) through the same entry point."""
    from diffusers import StableDiffusion3Pipeline

    sd3 = save_tiny_sd3(tmp_path_factory.mktemp("tiny_sd3") / "sd3")
    p = dict(model="my-sd3", model_path=str(sd3), guidance_scale=3.0)
    seen = []
    a = generate_images(params(**p), progress=lambda f, m: seen.append(f), cache=CACHE)
    assert a.images[0].shape == (32, 32, 3) and seen == pytest.approx([0.0, 0.5, 1.0])
    warm = [CACHE._entries[k] for k in CACHE.keys() if k[1] == str(sd3.resolve())]
    assert len(warm) == 1 and type(warm[0]) is StableDiffusion3Pipeline
    assert np.array_equal(run(**p), a.images[0])
    assert np.abs(run(**p, seed=2).astype(int) - a.images[0]).mean() > 5
    assert np.array_equal(run(**p, scheduler="euler"), a.images[0])  # its own FlowMatchEuler
    with pytest.raises(ParamsError, match="flow-matching"):
        run(**p, scheduler="dpmpp_2m")
    init = np.random.default_rng(2).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert run(**p, init_image=init, strength=0.5).shape == init.shape
    mask = np.zeros((32, 48), bool)
    mask[4:20, 10:40] = True
    out = run(**p, init_image=init, mask=mask, strength=1.0)
    assert np.array_equal(out[~mask], init[~mask]) and (out[mask] != init[mask]).any(axis=-1).mean() > 0.9


def test_sdxl_family_is_selected_from_model_index(tmp_path_factory):
    from diffusers import StableDiffusionXLPipeline

    sdxl = save_tiny_sdxl(tmp_path_factory.mktemp("tiny_sdxl") / "sdxl")
    p = dict(model="my-sdxl", model_path=str(sdxl), guidance_scale=5.0, negative_prompt="blurry")
    a = run(**p)
    warm = [CACHE._entries[k] for k in CACHE.keys() if k[1] == str(sdxl.resolve())]
    assert len(warm) == 1 and type(warm[0]) is StableDiffusionXLPipeline
    assert a.shape == (32, 32, 3) and np.array_equal(run(**p), a)
    assert not np.array_equal(run(**p, scheduler="dpmpp_2m_karras"), a)
    init = np.random.default_rng(4).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert run(**p, init_image=init, strength=0.5).shape == init.shape


def test_output_safety_checker_refuses_flagged_images(tmp_path_factory):
    """diffusers' safety checker, when the model folder has one: flagged images raise (diffusers would
    return black placeholders), unflagged ones pass through."""
    root = tmp_path_factory.mktemp("tiny_safety")
    strict, lenient = save_tiny_sd(root / "strict", safety="flag"), save_tiny_sd(root / "lenient", safety="pass")
    with pytest.raises(BlockedContentError, match="safety checker"):
        run(model="strict", model_path=str(strict))
    ok = run(model="lenient", model_path=str(lenient))
    assert ok.shape == (32, 32, 3) and ok.std() > 5  # a real (noise) image, not a blacked-out one
