"""The model registry: short names → Hub repos, offline-first resolution, warm-pipeline cache, devices.

Resolution order for a model name (DESIGN §5):
  1. an explicit local folder/file passed by the caller (`local_path`), or one the user
     registered with `register()` (persisted in `$STUDIO_HOME/models.json`);
  2. `$STUDIO_MODELS/<name>` (default `$STUDIO_HOME/models/<name>`);
  3. the Hugging Face cache, read with `local_files_only=True` (never touches the network);
  4. a download into `$STUDIO_MODELS/<name>` only when the caller allows network;
  5. otherwise `ModelUnavailableError` naming the model, its repo id, and the command and the
     folder layout that provide it. Never a placeholder.

Loaded pipelines stay warm in an LRU (`get_pipeline`) bounded by a memory budget
(`$STUDIO_MODEL_CACHE_GB`), so a second job on the same model does not reload it.
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import studio_home
from .errors import ModelUnavailableError, StudioError, safe_name

# ---- the built-in table -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    kind: the diffusers/transformers class that loads it (`model_index.json` `_class_name` for
      pipelines), or "lora" / "ip_adapter" for weight files applied to a base pipeline.
    dtype: preferred GPU dtype ("float16" / "bfloat16"); CPU always runs float32.
    size_hint: approximate bytes on disk of what the studio needs from the repo (for `studio models`).
    subfolder / weight_name: where inside the repo the weights sit (IP-Adapter, LoRA files).
    include: glob patterns worth downloading (skips single-file checkpoints duplicating the folders).
    """

    name: str
    repo_id: str
    revision: str = "main"
    kind: str = "DiffusionPipeline"
    dtype: str = "float16"
    licence: str = "see the model card"
    pipelines_using: tuple[str, ...] = ()
    size_hint: int = 0
    subfolder: str | None = None
    weight_name: str | None = None
    include: tuple[str, ...] = ()
    base: str | None = None  # for adapters: the base model family they apply to
    user: bool = False  # registered by the user (not in the built-in table)
    path: str | None = None  # user-registered location


GB = 1 << 30
MB = 1 << 20
_DIFFUSERS_FOLDERS = ("*.json", "*.txt", "*.model", "*/*.json", "*/*.txt", "*/*.model", "*/*.safetensors")

BUILTIN: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", kind="StableDiffusionPipeline",
                  licence="CreativeML OpenRAIL-M", pipelines_using=("text_to_image", "img2img", "sds", "animatediff"),
                  size_hint=int(5.2 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("sd15-inpaint", "stable-diffusion-v1-5/stable-diffusion-inpainting", kind="StableDiffusionInpaintPipeline",
                  licence="CreativeML OpenRAIL-M", pipelines_using=("inpaint",), size_hint=int(5.2 * GB),
                  include=_DIFFUSERS_FOLDERS),
        ModelSpec("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", kind="StableDiffusionXLPipeline",
                  licence="CreativeML OpenRAIL++-M", pipelines_using=("text_to_image", "img2img", "inpaint"),
                  size_hint=int(13.9 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("sdxl-turbo", "stabilityai/sdxl-turbo", kind="StableDiffusionXLPipeline",
                  licence="Stability AI Non-Commercial Research Community licence", pipelines_using=("text_to_image",),
                  size_hint=int(13.9 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("sd3-medium", "stabilityai/stable-diffusion-3-medium-diffusers", kind="StableDiffusion3Pipeline",
                  licence="Stability AI Community licence (gated: accept it on the Hub first)",
                  pipelines_using=("text_to_image",), size_hint=int(15.5 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("flux-schnell", "black-forest-labs/FLUX.1-schnell", kind="FluxPipeline", dtype="bfloat16",
                  licence="Apache-2.0", pipelines_using=("text_to_image",), size_hint=int(33.7 * GB),
                  include=_DIFFUSERS_FOLDERS),
        ModelSpec("controlnet-depth", "lllyasviel/control_v11f1p_sd15_depth", kind="ControlNetModel",
                  licence="CreativeML OpenRAIL-M", pipelines_using=("controlnet",), size_hint=int(1.45 * GB), base="sd15",
                  include=("config.json", "diffusion_pytorch_model.safetensors")),
        ModelSpec("controlnet-canny", "lllyasviel/control_v11p_sd15_canny", kind="ControlNetModel",
                  licence="CreativeML OpenRAIL-M", pipelines_using=("controlnet",), size_hint=int(1.45 * GB), base="sd15",
                  include=("config.json", "diffusion_pytorch_model.safetensors")),
        ModelSpec("controlnet-normal", "lllyasviel/control_v11p_sd15_normalbae", kind="ControlNetModel",
                  licence="CreativeML OpenRAIL-M", pipelines_using=("controlnet",), size_hint=int(1.45 * GB), base="sd15",
                  include=("config.json", "diffusion_pytorch_model.safetensors")),
        ModelSpec("ip-adapter", "h94/IP-Adapter", kind="ip_adapter", licence="Apache-2.0",
                  pipelines_using=("ip_adapter",), size_hint=int(2.6 * GB), subfolder="models",
                  weight_name="ip-adapter_sd15.safetensors", base="sd15",
                  include=("models/ip-adapter_sd15.safetensors", "models/image_encoder/*")),
        ModelSpec("lcm-lora", "latent-consistency/lcm-lora-sdv1-5", kind="lora", licence="CreativeML OpenRAIL++-M",
                  pipelines_using=("text_to_image",), size_hint=135 * MB, weight_name="pytorch_lora_weights.safetensors",
                  base="sd15"),
        ModelSpec("lcm-lora-sdxl", "latent-consistency/lcm-lora-sdxl", kind="lora", licence="CreativeML OpenRAIL++-M",
                  pipelines_using=("text_to_image",), size_hint=394 * MB, weight_name="pytorch_lora_weights.safetensors",
                  base="sdxl"),
        ModelSpec("zero123plus", "sudo-ai/zero123plus-v1.2", kind="Zero123PlusPipeline",
                  pipelines_using=("multiview",), size_hint=int(5.2 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("stable-zero123", "stabilityai/stable-zero123", kind="Zero123Pipeline",
                  licence="Stability AI Non-Commercial Research Community licence", pipelines_using=("multiview",),
                  size_hint=int(4.5 * GB)),
        ModelSpec("marigold-depth", "prs-eth/marigold-depth-v1-1", kind="MarigoldDepthPipeline",
                  pipelines_using=("materials",), size_hint=int(2.6 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("marigold-normals", "prs-eth/marigold-normals-v1-1", kind="MarigoldNormalsPipeline",
                  pipelines_using=("materials",), size_hint=int(2.6 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("marigold-iid", "prs-eth/marigold-iid-appearance-v1-1", kind="MarigoldIntrinsicsPipeline",
                  pipelines_using=("materials",), size_hint=int(2.6 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("marigold-iid-lighting", "prs-eth/marigold-iid-lighting-v1-1", kind="MarigoldIntrinsicsPipeline",
                  pipelines_using=("materials",), size_hint=int(2.6 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("shap-e", "openai/shap-e", kind="ShapEPipeline", licence="MIT", pipelines_using=("text_to_3d",),
                  size_hint=int(2.6 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("shap-e-img2img", "openai/shap-e-img2img", kind="ShapEImg2ImgPipeline", licence="MIT",
                  pipelines_using=("image_to_3d",), size_hint=int(2.6 * GB), include=_DIFFUSERS_FOLDERS),
        ModelSpec("svd", "stabilityai/stable-video-diffusion-img2vid-xt", kind="StableVideoDiffusionPipeline",
                  licence="Stability AI Community licence", pipelines_using=("video",), size_hint=int(9.6 * GB),
                  include=_DIFFUSERS_FOLDERS),
        ModelSpec("animatediff", "guoyww/animatediff-motion-adapter-v1-5-2", kind="MotionAdapter", licence="Apache-2.0",
                  pipelines_using=("video",), size_hint=int(1.8 * GB), base="sd15"),
        ModelSpec("prompt-llm", "Qwen/Qwen2.5-0.5B-Instruct", kind="AutoModelForCausalLM", dtype="bfloat16",
                  licence="Apache-2.0", pipelines_using=("prompt_enhance",), size_hint=int(1.0 * GB),
                  include=("*.json", "*.txt", "*.safetensors", "merges.txt", "vocab.json")),
        ModelSpec("blip-base", "Salesforce/blip-image-captioning-base", kind="BlipForConditionalGeneration",
                  dtype="float16", licence="BSD-3-Clause", pipelines_using=("caption",), size_hint=990 * MB,
                  include=("*.json", "*.txt", "model.safetensors")),
        ModelSpec("blip-large", "Salesforce/blip-image-captioning-large", kind="BlipForConditionalGeneration",
                  licence="BSD-3-Clause", pipelines_using=("caption",), size_hint=int(1.9 * GB),
                  include=("*.json", "*.txt", "model.safetensors")),
        ModelSpec("blip-vqa", "Salesforce/blip-vqa-base", kind="BlipForQuestionAnswering", licence="BSD-3-Clause",
                  pipelines_using=("caption",), size_hint=int(1.5 * GB), include=("*.json", "*.txt", "model.safetensors")),
        ModelSpec("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", kind="LlavaForConditionalGeneration",
                  licence="Llama 2 Community licence", pipelines_using=("caption",), size_hint=int(14.1 * GB),
                  include=("*.json", "*.model", "*.safetensors")),
        ModelSpec("rmbg", "briaai/RMBG-1.4", kind="segmentation", licence="bria-rmbg-1.4 (non-commercial)",
                  pipelines_using=("multiview",), size_hint=176 * MB),
        ModelSpec("tripo-sr", "stabilityai/TripoSR", kind="TripoSR", licence="MIT", pipelines_using=("image_to_3d",),
                  size_hint=int(1.7 * GB)),
        ModelSpec("instant-mesh", "TencentARC/InstantMesh", kind="InstantMesh", licence="Apache-2.0",
                  pipelines_using=("image_to_3d",), size_hint=int(3.6 * GB)),
    ]
}


# ---- locations ------------------------------------------------------------------------------------


def models_dir() -> Path:
    """`$STUDIO_MODELS`, default `$STUDIO_HOME/models` (not created here)."""
    env = os.environ.get("STUDIO_MODELS")
    return Path(env) if env else studio_home() / "models"


def _registry_file() -> Path:
    return studio_home() / "models.json"


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise StudioError(f"invalid model name {safe_name(name)!r}: use letters, digits, '.', '_' and '-' (max 100)")
    return name


def _load_user() -> dict[str, dict[str, Any]]:
    p = _registry_file()
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise StudioError(f"{p}: unreadable model registry ({e}); fix or delete it") from e
    return data if isinstance(data, dict) else {}


def register(name: str, path: str | Path, kind: str = "auto", base: str | None = None, licence: str = "user supplied") -> ModelSpec:
    """Register a user model (a diffusers/transformers folder, a fine-tuned checkpoint folder or a
    LoRA `.safetensors` file) under `name`, persisted in `$STUDIO_HOME/models.json`.

    kind "auto": "lora" for a file, the `_class_name` of `model_index.json` or the first
    `architectures` entry of `config.json` for a folder.
    """
    from studio.assets.atomic import write_bytes_atomic

    _check_model_name(name)
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise ModelUnavailableError(f"cannot register model {name!r}: {safe_name(str(p))} does not exist")
    if kind == "auto":
        kind = _detect_kind(p)
    entries = _load_user()
    entries[name] = {"path": str(p), "kind": kind, "base": base, "licence": licence}
    write_bytes_atomic(_registry_file(), json.dumps(entries, indent=2).encode())
    return spec(name)


def unregister(name: str) -> None:
    """Forget a user-registered model (files are left alone)."""
    from studio.assets.atomic import write_bytes_atomic

    entries = _load_user()
    if entries.pop(name, None) is not None:
        write_bytes_atomic(_registry_file(), json.dumps(entries, indent=2).encode())


def _detect_kind(p: Path) -> str:
    if p.is_file():
        return "lora" if p.suffix in (".safetensors", ".bin", ".pt") else "checkpoint"
    for fname, key in (("model_index.json", "_class_name"), ("config.json", "architectures"), ("config.json", "_class_name")):
        f = p / fname
        if f.exists():
            try:
                v = json.loads(f.read_text()).get(key)
            except ValueError:
                continue
            if isinstance(v, list) and v:
                return str(v[0])
            if isinstance(v, str):
                return v
    if (p / "pytorch_lora_weights.safetensors").exists():
        return "lora"
    return "folder"


def all_specs() -> dict[str, ModelSpec]:
    """Built-in table overlaid with the user's registrations (a user entry wins on a name clash)."""
    specs = dict(BUILTIN)
    for name, e in _load_user().items():
        b = BUILTIN.get(name)
        specs[name] = ModelSpec(
            name=name, repo_id=b.repo_id if b else "", revision=b.revision if b else "main",
            kind=e.get("kind") or "folder", dtype=b.dtype if b else "float16", licence=e.get("licence") or "user supplied",
            pipelines_using=b.pipelines_using if b else (), size_hint=0, subfolder=None if not b else b.subfolder,
            weight_name=None if not b else b.weight_name, base=e.get("base"), user=True, path=e.get("path"))
    return specs


def spec(name: str) -> ModelSpec:
    """The spec of a registered model; ModelUnavailableError (listing known names) for an unknown one."""
    specs = all_specs()
    if name not in specs:
        raise ModelUnavailableError(
            f"unknown model {safe_name(name)!r}; known: {', '.join(sorted(specs))}. "
            f"Register your own with `studio models register NAME PATH`.")
    return specs[name]


def provide_instructions(s: ModelSpec) -> str:
    """The command and folder layout that make `s` available offline."""
    target = models_dir() / s.name
    inc = "".join(f' --include "{g}"' for g in s.include)
    rev = f" --revision {s.revision}" if s.revision and s.revision != "main" else ""
    if s.kind in ("lora",) and s.weight_name:
        layout = f"{target}/{s.weight_name}"
    elif s.kind == "ip_adapter":
        layout = f"{target}/{s.subfolder}/{s.weight_name} and {target}/{s.subfolder}/image_encoder/"
    elif s.kind.endswith("Pipeline"):
        layout = f"{target}/model_index.json plus one subfolder per component (unet/, vae/, text_encoder/, ...)"
    else:
        layout = f"{target}/config.json plus its weights (*.safetensors)"
    return (f"run `hf download {s.repo_id}{rev}{inc} --local-dir {target}` "
            f"(older huggingface_hub: `huggingface-cli download ...`), or copy the repo's files so that "
            f"{layout} exists; or pass --allow-network to download it on first use")


# ---- resolution ----------------------------------------------------------------------------------


def _nonempty(p: Path) -> bool:
    if p.is_file():
        return p.stat().st_size > 0
    return p.is_dir() and any(p.iterdir())


def _hf_cached(s: ModelSpec) -> Path | None:
    if not s.repo_id:
        return None
    try:
        from huggingface_hub import snapshot_download

        p = Path(snapshot_download(s.repo_id, revision=s.revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError, OfflineModeIsEnabled, missing revision, ...
        return None
    return p if _nonempty(p) else None


def resolve(name: str, local_path: str | Path | None = None, allow_network: bool = False) -> Path:
    """Folder (or file, for LoRAs) holding model `name`; see the module docstring for the order.

    `name` may also be a path to an existing folder/file (a model that is not registered).
    Raises ModelUnavailableError naming the model, its repo id and how to provide it.
    """
    if local_path is not None:
        p = Path(local_path).expanduser()
        if not _nonempty(p):
            raise ModelUnavailableError(f"model {safe_name(name)!r}: the given folder {safe_name(str(p))} is missing or empty")
        return p
    specs = all_specs()
    if name not in specs:
        p = Path(name).expanduser()
        if ("/" in name or "\\" in name or p.suffix) and _nonempty(p):
            return p
    s = spec(name)
    if s.path:
        p = Path(s.path)
        if _nonempty(p):
            return p
        raise ModelUnavailableError(f"model {name!r} is registered at {safe_name(s.path)}, which is missing or empty; "
                                    f"re-register it with `studio models register {name} PATH`")
    local = models_dir() / s.name
    if _nonempty(local):
        return local
    cached = _hf_cached(s)
    if cached is not None:
        return cached
    if allow_network and s.repo_id:
        try:
            from huggingface_hub import snapshot_download

            local.mkdir(parents=True, exist_ok=True)
            return Path(snapshot_download(s.repo_id, revision=s.revision, local_dir=local,
                                          allow_patterns=list(s.include) or None))
        except Exception as e:  # noqa: BLE001
            raise ModelUnavailableError(f"model {name!r} ({s.repo_id}): download failed: {e}. {provide_instructions(s)}") from e
    raise ModelUnavailableError(
        f"model {name!r} (Hugging Face repo {s.repo_id}, revision {s.revision}) is not available offline: "
        f"not in {local} nor in the Hugging Face cache. To provide it, {provide_instructions(s)}.")


# ---- listing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    name: str
    present: bool
    path: Path | None
    bytes_on_disk: int
    pipelines: tuple[str, ...]
    repo_id: str = ""
    kind: str = ""
    licence: str = ""
    size_hint: int = 0


def _du(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(p):
        for f in files:
            fp = Path(root) / f
            try:
                total += fp.resolve().stat().st_size  # HF cache snapshots hold symlinks to blobs
            except OSError:
                pass
    return total


def list_models() -> list[ModelStatus]:
    """Every registered model (built-in and user), whether it is present offline, its size on disk
    and the pipelines that use it. Never touches the network."""
    out = []
    for name, s in sorted(all_specs().items()):
        try:
            p: Path | None = resolve(name)
        except ModelUnavailableError:
            p = None
        out.append(ModelStatus(name, p is not None, p, _du(p) if p is not None else 0, s.pipelines_using,
                               s.repo_id, s.kind, s.licence, s.size_hint))
    return out


# ---- devices ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceConfig:
    """Where and how a pipeline runs. CPU: float32, no slicing/offload. CUDA: fp16 (bf16 where the
    model prefers it and the GPU supports it), attention slicing and accelerate CPU offload on request."""

    device: str = "cpu"
    dtype: str = "float32"
    attention_slicing: bool = False
    cpu_offload: bool = False

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def select_device(preferred_dtype: str = "float16", size_hint: int = 0) -> DeviceConfig:
    """Pick the device: `$STUDIO_DEVICE` ("cpu", "cuda", "cuda:1") overrides; else CUDA when present.

    On CUDA: dtype = bfloat16 if the model prefers it and the GPU supports it, else float16;
    attention slicing when the GPU has < 12 GiB; model CPU offload (accelerate) when the model's
    size hint exceeds 60 % of free GPU memory or `$STUDIO_CPU_OFFLOAD=1`.
    """
    import torch

    want = os.environ.get("STUDIO_DEVICE", "").strip().lower()
    if want == "cpu" or (not want and not torch.cuda.is_available()):
        return DeviceConfig()
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise StudioError(f"STUDIO_DEVICE={want} but CUDA is not available (torch {torch.__version__})")
    dev = want or "cuda"
    idx = torch.device(dev).index or 0
    dtype = "bfloat16" if preferred_dtype == "bfloat16" and torch.cuda.is_bf16_supported() else "float16"
    free, total = torch.cuda.mem_get_info(idx)
    offload = os.environ.get("STUDIO_CPU_OFFLOAD") == "1" or (size_hint > 0.6 * free)
    return DeviceConfig(dev, dtype, attention_slicing=total < 12 * GB, cpu_offload=offload)


def place_pipeline(pipe: Any, cfg: DeviceConfig) -> Any:
    """Move a diffusers pipeline to `cfg` (dtype + device, or accelerate model CPU offload) and enable
    attention slicing when asked. Returns the same pipeline.

    Load with `dtype=cfg.torch_dtype` first: casting here is skipped when the dtype already matches
    (diffusers keeps some modules in float32 on purpose and warns about a blind cast)."""
    dtype = getattr(pipe, "dtype", None)
    if dtype is not None and dtype != cfg.torch_dtype:
        pipe.to(dtype=cfg.torch_dtype)
    if cfg.cpu_offload and hasattr(pipe, "enable_model_cpu_offload"):
        pipe.enable_model_cpu_offload(device=cfg.device)
    elif cfg.device != "cpu":
        pipe.to(cfg.device)
    if cfg.attention_slicing and hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()
    return pipe


# ---- the warm-pipeline LRU -----------------------------------------------------------------------------


def object_bytes(obj: Any) -> int:
    """Bytes of parameters + buffers of every torch module in `obj` (a module, a diffusers pipeline,
    a tuple/dict of them); 0 when none. Shared modules are counted once."""
    import torch

    seen: set[int] = set()
    total = 0

    def visit(o: Any) -> None:
        nonlocal total
        if isinstance(o, torch.nn.Module):
            for t in list(o.parameters()) + list(o.buffers()):
                if id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
        elif isinstance(o, dict):
            for v in o.values():
                visit(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                visit(v)
        elif hasattr(o, "components") and isinstance(getattr(o, "components"), dict):
            visit(o.components)

    visit(obj)
    return total


def default_cache_budget() -> int:
    """`$STUDIO_MODEL_CACHE_GB`, else 80 % of GPU memory on CUDA, else 50 % of system RAM."""
    env = os.environ.get("STUDIO_MODEL_CACHE_GB")
    if env:
        return int(float(env) * GB)
    try:
        import torch

        if torch.cuda.is_available():
            return int(0.8 * torch.cuda.get_device_properties(0).total_memory)
    except Exception:  # noqa: BLE001
        pass
    try:
        import psutil

        return int(0.5 * psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001
        return 8 * GB


@dataclass
class PipelineCache:
    """Least-recently-used cache of loaded pipelines/models, bounded by `budget` bytes.

    The newest entry is always kept even if alone it exceeds the budget. `loads` counts loader calls
    per key (what tests and bench/ measure)."""

    budget: int = field(default_factory=default_cache_budget)
    _entries: OrderedDict = field(default_factory=OrderedDict)
    _sizes: dict = field(default_factory=dict)
    loads: dict = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def get(self, key: Any, loader: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            obj = loader()
            self.loads[key] = self.loads.get(key, 0) + 1
            self._entries[key] = obj
            self._sizes[key] = object_bytes(obj)
            self._evict()
            return obj

    def _evict(self) -> None:
        while len(self._entries) > 1 and sum(self._sizes.values()) > self.budget:
            old, _ = self._entries.popitem(last=False)
            self._sizes.pop(old, None)

    def __contains__(self, key: Any) -> bool:
        return key in self._entries

    def keys(self) -> list:
        return list(self._entries)

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass


PIPELINES = PipelineCache()


def get_pipeline(key: Any, loader: Callable[[], Any], cache: PipelineCache | None = None) -> Any:
    """The warm object for `key` (e.g. (name, path, device, dtype)), calling `loader()` only on a miss."""
    return (cache or PIPELINES).get(key, loader)
