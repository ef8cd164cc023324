"""One image → posed novel views at a fixed rig: a Zero123-class camera-conditioned diffusion model,
implemented here (no community pipeline code needed).

Architecture (Zero-1-to-3 / Stable Zero123, diffusers folder layout):
  model_index.json + unet/ (UNet2DConditionModel, in_channels 8 = 4 noisy latents + 4 latents of the
  conditioning image), vae/ (AutoencoderKL), image_encoder/ (CLIPVisionModelWithProjection),
  feature_extractor/ (CLIPImageProcessor), scheduler/ (DDIM, Euler, ...) and cc_projection/
  (`CCProjection`: `projection = nn.Linear(768 + 4, 768)`; sizes read from the weights, as the
  community Zero1to3 pipeline saves no config for it). Repos in this layout: kxic/zero123-xl-style
  conversions (e.g. "ashawkey/stable-zero123-diffusers"); the Hub repo stabilityai/stable-zero123
  itself ships the original `stable_zero123.ckpt`, which must be converted to this folder layout.
  Conditioning per target view: CLIP image embedding (B,1,768) ++ pose (B,1,4) → cc_projection →
  encoder_hidden_states (B,1,768). The conditioning image latents are the VAE posterior *mode*
  without the scaling factor (as Zero123 does). Classifier-free guidance uses zero embeddings and
  zero image latents for the unconditional branch.

Pose vector (4-d, radians):
  "zero123":        [Δpolar, sin Δazimuth, cos Δazimuth, Δradius]
  "stable-zero123": [Δpolar, sin Δazimuth, cos Δazimuth, polar of the input view]
  with polar = 90° − elevation, Δ = target − input. Chosen by `pose_format` (default: from the
  model name: names containing "stable" use "stable-zero123").

The rig (world frame: metres, +Y up, object at the origin): the input image is taken as seen from
azimuth 0 at elevation `input_elevation` (camera on +Z looking at the origin). View i sits at
azimuth az_i (degrees, counter-clockwise seen from above: +Z → +X at 90°) and elevation el_i on a
sphere of `radius`:
    eye = radius · (cos el · sin az, sin el, cos el · cos az)
and looks at the origin with +Y up (`Cameras.look_at`, OpenCV axes), square images of `size` px,
vertical field of view `fov_deg`. Default: 6 views at azimuths 30, 90, …, 330 alternating
elevations +20° / −10° (the Zero123++ rig), radius 2.0, the field of view Zero123 was trained with
(≈ 49.13°: its Objaverse renders used a 35 mm lens on a 32 mm sensor). Δradius is 0, so the views
keep the input's apparent size; one image has no metric scale, so the world's scale is set by
`radius` (with foreground_ratio 0.8 the object spans roughly ±0.7 m).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.assets.cameras import Cameras
from studio.assets.views import Views
from studio.errors import ModelUnavailableError
from studio.models import PipelineCache, get_pipeline, resolve, select_device, spec

from .generation_common import Cancel, Progress, check_cancel, resolve_seed

DEFAULT_MODEL = "stable-zero123"
COMPONENTS = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler", "cc_projection")
SCHEDULERS = ("ddim", "euler")
# Zero123's Objaverse renders: a 35 mm lens on a 32 mm sensor → 2·atan(16/35) ≈ 49.13° field of view.
ZERO123_FOV_DEG = float(np.degrees(2 * np.arctan(16 / 35)))


@dataclass(frozen=True)
class MultiviewRig:
    """The fixed camera rig (see the module docstring). elevations: one per view, or a shorter tuple
    repeated cyclically; azimuths None → evenly spaced from `azimuth_offset`."""

    n: int = 6
    elevations: tuple[float, ...] = (20.0, -10.0)
    azimuths: tuple[float, ...] | None = None
    azimuth_offset: float = 30.0
    radius: float = 2.0
    fov_deg: float = ZERO123_FOV_DEG
    size: int = 256
    input_elevation: float = 0.0
    input_radius: float = 2.0

    def __post_init__(self) -> None:
        if self.n < 1 or not self.elevations or self.size < 8 or self.radius <= 0 or not 0 < self.fov_deg < 180:
            raise ValueError(f"invalid multiview rig {self}")
        if self.azimuths is not None and len(self.azimuths) != self.n:
            raise ValueError(f"rig has n={self.n} but {len(self.azimuths)} azimuths")

    def angles(self) -> tuple[np.ndarray, np.ndarray]:
        """(azimuths, elevations), each (n,) float64 degrees."""
        az = (np.asarray(self.azimuths, np.float64) if self.azimuths is not None
              else (self.azimuth_offset + 360.0 * np.arange(self.n) / self.n) % 360.0)
        el = np.asarray([self.elevations[i % len(self.elevations)] for i in range(self.n)], np.float64)
        return az, el

    def eyes(self) -> np.ndarray:
        """(n,3) camera centres in world metres."""
        az, el = np.radians(self.angles()[0]), np.radians(self.angles()[1])
        return self.radius * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=1)

    def cameras(self) -> Cameras:
        """The rig's exact OpenCV cameras (size × size, looking at the origin, +Y up)."""
        cams = Cameras.look_at(self.eyes(), np.zeros(3), (0.0, 1.0, 0.0), self.fov_deg, self.size, self.size)
        az, el = self.angles()
        return Cameras(cams.K, cams.cam_to_world, cams.width, cams.height,
                       names=tuple(f"view_{i:02d}_az{a:g}_el{e:g}" for i, (a, e) in enumerate(zip(az, el))))


def pose_vectors(rig: MultiviewRig, pose_format: str = "zero123") -> np.ndarray:
    """(n,4) float32 Zero123 relative poses of the rig's views w.r.t. the input view (see module doc)."""
    az, el = rig.angles()
    d_polar = np.radians((90.0 - el) - (90.0 - rig.input_elevation))
    d_az = np.radians(az)
    if pose_format == "zero123":
        last = np.full(rig.n, rig.radius - rig.input_radius)
    elif pose_format == "stable-zero123":
        last = np.full(rig.n, np.radians(90.0 - rig.input_elevation))
    else:
        raise ValueError(f"unknown pose_format {pose_format!r}; use 'zero123' or 'stable-zero123'")
    return np.stack([d_polar, np.sin(d_az), np.cos(d_az), last], axis=1).astype(np.float32)


# ---- the model ---------------------------------------------------------------------------------


def _cc_projection_class():
    import torch
    from diffusers import ConfigMixin, ModelMixin
    from diffusers.configuration_utils import register_to_config

    class CCProjection(ModelMixin, ConfigMixin):
        """Zero123's camera-conditioning projection: Linear(in_channel = clip_dim + 4 → out_channel)."""

        @register_to_config
        def __init__(self, in_channel: int = 772, out_channel: int = 768):
            super().__init__()
            self.projection = torch.nn.Linear(in_channel, out_channel)

        def forward(self, x):
            return self.projection(x)

    return CCProjection


_CC = None


def CCProjection():  # noqa: N802 - a lazily built class (diffusers/torch imported on first use)
    global _CC
    if _CC is None:
        _CC = _cc_projection_class()
    return _CC


@dataclass
class Zero123Model:
    """Loaded components (see the module docstring); `folder` is where they came from."""

    unet: Any
    vae: Any
    image_encoder: Any
    feature_extractor: Any
    scheduler_config: dict
    scheduler_class: str
    cc_projection: Any
    folder: Path
    device: str = "cpu"
    dtype: Any = None
    components: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.components = {"unet": self.unet, "vae": self.vae, "image_encoder": self.image_encoder,
                           "cc_projection": self.cc_projection}


def _load_cc_projection(folder: Path):
    import torch

    sub = folder / "cc_projection"
    files = sorted(sub.glob("*.safetensors")) or sorted(sub.glob("*.bin"))
    if not files:
        raise ModelUnavailableError(f"{sub}: no weights (*.safetensors or *.bin)")
    if files[0].suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(files[0]))
    else:
        sd = torch.load(files[0], map_location="cpu", weights_only=True)
    sd = {(k if k.startswith("projection.") else f"projection.{k}"): v for k, v in sd.items()}
    if "projection.weight" not in sd:
        raise ModelUnavailableError(f"{files[0]}: no projection weight (keys: {', '.join(sorted(sd))[:200]})")
    # shapes from the weights: the community Zero1to3 CCProjection does not register its config
    out_ch, in_ch = sd["projection.weight"].shape
    m = CCProjection()(in_channel=int(in_ch), out_channel=int(out_ch))
    m.load_state_dict(sd)
    return m


def load_zero123(folder: str | Path, device: str = "cpu", dtype: Any = None) -> Zero123Model:
    """Load a Zero123-class diffusers folder; ModelUnavailableError naming what is missing."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    folder = Path(folder)
    dtype = dtype or torch.float32
    missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
    if not (folder / "model_index.json").exists() or missing:
        raise ModelUnavailableError(
            f"{folder} is not a Zero123-class diffusers folder: needs model_index.json and subfolders "
            f"{', '.join(COMPONENTS)} (missing: {', '.join(missing) or 'model_index.json'})")
    sched_cfg = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype)
    if unet.config.in_channels != 8:
        raise ModelUnavailableError(f"{folder}/unet: in_channels is {unet.config.in_channels}, a Zero123 UNet has 8")
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype)
    enc = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder", dtype=dtype)
    fe = CLIPImageProcessor.from_pretrained(folder / "feature_extractor")
    cc = _load_cc_projection(folder)
    if dtype != torch.float32:
        cc = cc.to(dtype=dtype)
    cls = sched_cfg.get("_class_name", "DDIMScheduler")
    if not hasattr(diffusers, cls):
        raise ModelUnavailableError(f"{folder}/scheduler: unknown scheduler class {cls!r}")
    m = Zero123Model(unet, vae, enc, fe, sched_cfg, cls, cc, folder, device, dtype)
    for mod in m.components.values():
        mod.eval().requires_grad_(False).to(device)
    return m


def save_zero123(model: Zero123Model | dict, folder: str | Path) -> Path:
    """Write components in the diffusers folder layout `load_zero123` reads (model_index.json names
    cc_projection as the community Zero1to3 pipeline does)."""
    import diffusers

    c = model if isinstance(model, dict) else {**model.components, "feature_extractor": model.feature_extractor,
                                                "scheduler": getattr(diffusers, model.scheduler_class).from_config(model.scheduler_config)}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("unet", "vae", "image_encoder", "feature_extractor", "scheduler", "cc_projection"):
        c[name].save_pretrained(folder / name)
    index = {"_class_name": "Zero1to3StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
             "feature_extractor": ["transformers", "CLIPImageProcessor"],
             "scheduler": ["diffusers", type(c["scheduler"]).__name__],
             "cc_projection": ["pipeline_zero1to3", "CCProjection"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def _scheduler(m: Zero123Model, name: str | None):
    import diffusers

    if name is None:
        return getattr(diffusers, m.scheduler_class).from_config(m.scheduler_config)
    if name == "ddim":
        return diffusers.DDIMScheduler.from_config(m.scheduler_config)
    if name == "euler":
        return diffusers.EulerDiscreteScheduler.from_config(m.scheduler_config)
    raise ValueError(f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULERS)} or None (the model's)")


# ---- sampling ----------------------------------------------------------------------------------


def sample_views(m: Zero123Model, cond_rgb: np.ndarray, poses: np.ndarray, steps: int = 50, guidance: float = 3.0,
                 seed: int = 0, scheduler: str | None = None, progress: Progress | None = None,
                 cancel: Cancel | None = None) -> np.ndarray:
    """Denoise one view per pose. cond_rgb (S,S,3) float32 sRGB [0,1] on white; poses (N,4) float32.
    Returns (N,S,S,3) float32 sRGB in [0,1]. Noise is drawn on the CPU from `seed` (device independent);
    `progress` after every step, `cancel()` polled between steps (CancelledError)."""
    import torch

    dev, dt = m.device, m.dtype
    n, s = len(poses), cond_rgb.shape[0]
    f = 2 ** (len(m.vae.config.block_out_channels) - 1)
    if s % f:
        raise ValueError(f"view size {s} must be a multiple of the VAE factor {f}")
    sched = _scheduler(m, scheduler)
    cfg = guidance > 1.0
    with torch.no_grad():
        pix = m.feature_extractor(images=[(np.clip(cond_rgb, 0, 1) * 255 + 0.5).astype(np.uint8)], return_tensors="pt",
                                  do_rescale=True).pixel_values.to(dev, dt)
        emb = m.image_encoder(pix).image_embeds[:, None, :]  # (1,1,D)
        pose = torch.as_tensor(poses, dtype=dt, device=dev)[:, None, :]  # (N,1,4)
        cond = m.cc_projection(torch.cat([emb.expand(n, -1, -1), pose], dim=-1))  # (N,1,D)
        img = torch.as_tensor(cond_rgb, dtype=dt, device=dev).permute(2, 0, 1)[None] * 2 - 1
        img_lat = m.vae.encode(img).latent_dist.mode().expand(n, -1, -1, -1)  # unscaled, as Zero123
        if cfg:
            cond = torch.cat([torch.zeros_like(cond), cond])
            img_lat = torch.cat([torch.zeros_like(img_lat), img_lat])
        gen = torch.Generator("cpu").manual_seed(int(seed))
        lat = torch.randn((n, m.unet.config.out_channels, s // f, s // f), generator=gen, dtype=torch.float32)
        lat = (lat * sched.init_noise_sigma).to(dev, dt)
        sched.set_timesteps(steps, device=dev)
        ts = sched.timesteps
        for i, t in enumerate(ts):
            check_cancel(cancel)
            x = torch.cat([lat, lat]) if cfg else lat
            x = sched.scale_model_input(x, t)
            eps = m.unet(torch.cat([x, img_lat], dim=1), t, encoder_hidden_states=cond).sample
            if cfg:
                u, c = eps.chunk(2)
                eps = u + guidance * (c - u)
            lat = sched.step(eps, t, lat, generator=gen if dev == "cpu" else None).prev_sample
            if progress is not None:
                progress((i + 1) / len(ts), f"multiview step {i + 1}/{len(ts)}")
        check_cancel(cancel)
        out = m.vae.decode(lat / m.vae.config.scaling_factor).sample
    return ((out.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)


def _model_loader(folder: Path, device: str, dtype: Any):
    return lambda: load_zero123(folder, device, dtype)


def image_to_multiview(
    image: Any,
    model: str = DEFAULT_MODEL,
    rig: MultiviewRig = MultiviewRig(),
    steps: int = 50,
    guidance: float = 3.0,
    seed: int | None = 0,
    scheduler: str | None = None,
    pose_format: str | None = None,
    local_path: str | Path | None = None,
    allow_network: bool = False,
    foreground_ratio: float = 0.8,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    cache: PipelineCache | None = None,
) -> Views:
    """Generate `rig.n` views of the object in `image` (path, PIL image or array; alpha = mask, else the
    border colour is keyed out; recentred and padded on white as Zero123 expects).

    Returns Views: images (n,S,S,3) float32 *linear* RGB, masks (n,S,S) float32 (pixels differing from
    the white background), cameras = `rig.cameras()` exactly. Raises ModelUnavailableError (with the
    repo id and how to provide it) when the model is absent, CancelledError when cancelled."""
    from studio.assets.colour import srgb_to_linear

    from .image_to_asset import prepare_image

    check_cancel(cancel)
    folder = resolve(model, local_path=local_path, allow_network=allow_network)
    if pose_format is None:
        pose_format = "stable-zero123" if "stable" in model.lower() or "stable" in folder.name.lower() else "zero123"
    poses = pose_vectors(rig, pose_format)
    seed = resolve_seed(seed)
    prep = prepare_image(image, size=rig.size, foreground_ratio=foreground_ratio, background=1.0)
    try:
        s = spec(model)
        cfg = select_device(s.dtype, s.size_hint)
    except ModelUnavailableError:
        cfg = select_device()
    if progress is not None:
        progress(0.0, f"loading {model}")
    m = get_pipeline(("zero123", str(folder.resolve()), cfg.device, cfg.dtype),
                     _model_loader(folder, cfg.device, cfg.torch_dtype), cache)
    srgb = sample_views(m, prep.image, poses, steps, guidance, seed, scheduler, progress, cancel)
    masks = (np.abs(srgb - 1.0).max(axis=3) > 0.08).astype(np.float32)
    return Views(srgb_to_linear(srgb).astype(np.float32), rig.cameras(), masks)


# ---- CLI-callable ------------------------------------------------------------------------------------


def save_views(views: Views, out_dir: str | Path, stem: str = "view") -> list[Path]:
    """Write `<stem>_<i>.png` (sRGB, 8-bit) and `cameras.json` (OpenCV K, cam_to_world, width, height,
    names; world +Y up, metres) atomically. Returns the PNG paths then the JSON path."""
    from studio.assets.atomic import atomic_path, write_bytes_atomic
    from studio.assets.colour import linear_to_srgb

    from .generation_common import to_pil, to_uint8

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    srgb = to_uint8(linear_to_srgb(views.images))
    for i, im in enumerate(srgb):
        p = out / f"{stem}_{i}.png"
        with atomic_path(p) as tmp:
            to_pil(im).save(tmp, format="PNG")
        paths.append(p)
    c = views.cameras
    cams = {"convention": "OpenCV (x right, y down, z forward); world metres, +Y up",
            "width": c.width, "height": c.height, "names": list(c.names or ()),
            "K": np.asarray(c.K).tolist(), "cam_to_world": np.asarray(c.cam_to_world).tolist()}
    j = out / "cameras.json"
    write_bytes_atomic(j, json.dumps(cams, indent=1).encode())
    return paths + [j]


def multiview_files(image: Any, out_dir: str | Path, model: str = DEFAULT_MODEL, n: int = 6, size: int = 256,
                    steps: int = 50, guidance: float = 3.0, seed: int | None = 0, allow_network: bool = False,
                    progress: Progress | None = None, cancel: Cancel | None = None) -> list[Path]:
    """`studio generate multiview IMAGE`: generate on the default rig with `n` views of `size` px and
    write them with `save_views`."""
    views = image_to_multiview(image, model=model, rig=MultiviewRig(n=n, size=size), steps=steps, guidance=guidance,
                               seed=seed, allow_network=allow_network, progress=progress, cancel=cancel)
    return save_views(views, out_dir)
