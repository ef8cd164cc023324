"""Model registry: offline-first resolution order, instructions on a miss, user registrations,
listing, the warm-pipeline LRU (loads counted) and the CPU device policy."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from studio import models  # noqa: E402
from studio.errors import ModelUnavailableError, StudioError  # noqa: E402
from studio.models import (BUILTIN, ModelSpec, PipelineCache, list_models, object_bytes, register, resolve,  # noqa: E402
                           select_device)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Empty $STUDIO_HOME, $STUDIO_MODELS and Hugging Face cache for every test."""
    import huggingface_hub.constants as hfc

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("STUDIO_DEVICE", raising=False)
    return tmp_path


def fake_diffusers_folder(path, cls="StableDiffusionPipeline", payload=b"x" * 1000):
    path.mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    (path / "unet").mkdir()
    (path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(payload)
    return path


def fake_hf_cache(root, repo_id, commit="0123456789abcdef0123456789abcdef01234567"):
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return fake_diffusers_folder(repo / "snapshots" / commit)


def test_builtin_table_has_the_studio_models():
    for name in ("sd15", "sdxl", "sd3-medium", "flux-schnell", "controlnet-depth", "controlnet-canny", "controlnet-normal",
                 "ip-adapter", "lcm-lora", "zero123plus", "marigold-depth", "marigold-normals", "marigold-iid", "shap-e",
                 "svd", "animatediff", "blip-base", "llava-1.5-7b", "tripo-sr", "instant-mesh"):
        s = BUILTIN[name]
        assert "/" in s.repo_id and s.kind and s.pipelines_using and s.size_hint > 0, name
    assert BUILTIN["sd15"].repo_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert BUILTIN["flux-schnell"].dtype == "bfloat16"


def test_missing_model_error_names_repo_command_and_layout(isolated):
    with pytest.raises(ModelUnavailableError) as e:
        resolve("sd15")
    msg = str(e.value)
    assert "sd15" in msg and "stable-diffusion-v1-5/stable-diffusion-v1-5" in msg
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5" in msg
    assert f"--local-dir {isolated / 'models' / 'sd15'}" in msg
    assert "model_index.json" in msg
    assert e.value.exit_code == 6


def test_unknown_name_lists_known_models():
    with pytest.raises(ModelUnavailableError, match="unknown model 'nope'.*sd15"):
        resolve("nope")


def test_resolution_order_explicit_then_studio_models_then_hf_cache(isolated):
    cached = fake_hf_cache(isolated / "hf", BUILTIN["sd15"].repo_id)
    assert resolve("sd15") == cached  # only the HF cache has it
    local = fake_diffusers_folder(isolated / "models" / "sd15")
    assert resolve("sd15") == local  # $STUDIO_MODELS wins over the cache
    explicit = fake_diffusers_folder(isolated / "elsewhere")
    assert resolve("sd15", local_path=explicit) == explicit  # an explicit folder wins over both
    with pytest.raises(ModelUnavailableError, match="missing or empty"):
        resolve("sd15", local_path=isolated / "does-not-exist")


def test_network_only_when_allowed(isolated, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, revision=None, local_files_only=False, local_dir=None, allow_patterns=None, **kw):
        calls.append(dict(repo_id=repo_id, local_files_only=local_files_only, local_dir=local_dir, allow_patterns=allow_patterns))
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        fake_diffusers_folder(local_dir / "x")
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(ModelUnavailableError):
        resolve("sdxl")
    assert calls and all(c["local_files_only"] for c in calls)  # never a download without permission
    calls.clear()
    p = resolve("sdxl", allow_network=True)
    assert p == isolated / "models" / "sdxl"
    assert [c["local_files_only"] for c in calls] == [True, False]
    assert calls[1]["repo_id"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert "*/*.safetensors" in calls[1]["allow_patterns"]


def test_download_failure_is_model_unavailable(isolated):
    # HF_HUB_OFFLINE is forced on: the real snapshot_download refuses, and the error says how to provide the model.
    with pytest.raises(ModelUnavailableError, match="download failed.*hf download"):
        resolve("blip-base", allow_network=True)


def test_register_user_models_persist_and_resolve(isolated):
    ckpt = fake_diffusers_folder(isolated / "my-finetune", cls="StableDiffusionXLPipeline")
    lora = isolated / "style.safetensors"
    lora.write_bytes(b"l" * 123)
    s = register("my-sdxl", ckpt)
    assert s.kind == "StableDiffusionXLPipeline" and s.user
    assert register("my-style", lora, base="sd15").kind == "lora"
    data = json.loads((isolated / "home" / "models.json").read_text())
    assert data["my-style"]["path"] == str(lora.resolve()) and data["my-style"]["base"] == "sd15"
    assert resolve("my-sdxl") == ckpt.resolve()
    assert resolve("my-style") == lora.resolve()
    with pytest.raises(StudioError, match="invalid model name"):
        register("../escape", ckpt)
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        register("ghost", isolated / "ghost")
    lora.unlink()
    with pytest.raises(ModelUnavailableError, match="re-register"):
        resolve("my-style")
    models.unregister("my-style")
    assert "my-style" not in models.all_specs()


def test_list_models_reports_presence_size_and_pipelines(isolated):
    fake_diffusers_folder(isolated / "models" / "sd15", payload=b"w" * 5000)
    fake_hf_cache(isolated / "hf", BUILTIN["blip-base"].repo_id)
    register("mine", fake_diffusers_folder(isolated / "mine", payload=b"m" * 777))
    rows = {r.name: r for r in list_models()}
    assert set(BUILTIN) <= set(rows) and "mine" in rows
    sd = rows["sd15"]
    assert sd.present and sd.path == isolated / "models" / "sd15"
    assert sd.bytes_on_disk == 5000 + len(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    assert "text_to_image" in sd.pipelines
    assert rows["blip-base"].present and rows["blip-base"].bytes_on_disk > 1000
    assert rows["mine"].present and rows["mine"].bytes_on_disk > 777
    assert not rows["sdxl"].present and rows["sdxl"].path is None and rows["sdxl"].bytes_on_disk == 0


def test_lru_cache_does_not_reload_and_evicts_least_recent():
    mb = 1 << 20
    cache = PipelineCache(budget=3 * mb)
    made = []

    def loader(name):
        def load():
            made.append(name)
            return torch.nn.Linear(512, 512, bias=False)  # exactly 1 MiB of float32 weights
        return load

    a = cache.get("a", loader("a"))
    assert cache.get("a", loader("a")) is a and made == ["a"] and cache.loads == {"a": 1}
    cache.get("b", loader("b"))
    cache.get("c", loader("c"))
    assert cache.bytes == 3 * mb
    cache.get("a", loader("a"))  # touch a: b is now least recent
    cache.get("d", loader("d"))
    assert "b" not in cache and set(cache.keys()) == {"c", "a", "d"}
    cache.get("b", loader("b"))
    assert cache.loads["b"] == 2 and made.count("a") == 1
    big = PipelineCache(budget=mb // 2)  # the newest entry stays even when alone it exceeds the budget
    big.get("x", loader("x"))
    assert "x" in big


def test_object_bytes_counts_shared_modules_once():
    lin = torch.nn.Linear(10, 10)
    assert object_bytes(lin) == (100 + 10) * 4
    assert object_bytes({"a": lin, "b": (lin, torch.nn.Linear(1, 1, bias=False))}) == (110 + 1) * 4
    assert object_bytes("not a model") == 0


def test_cpu_device_policy(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    cfg = select_device("float16")
    assert (cfg.device, cfg.dtype, cfg.attention_slicing, cfg.cpu_offload) == ("cpu", "float32", False, False)
    assert cfg.torch_dtype is torch.float32
    if not torch.cuda.is_available():
        monkeypatch.setenv("STUDIO_DEVICE", "cuda")
        with pytest.raises(StudioError, match="CUDA is not available"):
            select_device()


def test_spec_is_frozen_and_described():
    s = ModelSpec("x", "org/x")
    with pytest.raises(Exception):
        s.name = "y"  # type: ignore[misc]
    assert "hf download org/x" in models.provide_instructions(s)
