"""Tiny, randomly initialised models of the real architectures, built and saved offline by tests.

Every builder writes a folder in the exact layout the real Hub repo has (diffusers
`model_index.json` + component subfolders; transformers `config.json` + tokenizer files), so the
studio loads them through the same registry/`from_pretrained` code as real weights. Outputs are
noise: tests check shapes, determinism, conditioning effects and error paths, not beauty.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402


def single_thread():
    """Context for tests: tiny models gain nothing from threads, and on a shared CPU OpenMP
    spin-waiting across oversubscribed cores makes them 10–100× slower. Restores the old setting."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        old = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    return ctx()

# ---- tokenizers built from in-memory vocabularies ----------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte → printable unicode table (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


CLIP_VOCAB_SIZE = 1000


def write_clip_tokenizer(folder: Path, max_length: int = 77) -> Path:
    """A CLIP byte-level BPE tokenizer (vocab.json + merges.txt) covering every byte, a few merges."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["t h", "th e</w>", "a n", "an d</w>", "o f</w>", "i n", "r e", "e r</w>"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    assert len(vocab) <= CLIP_VOCAB_SIZE
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=max_length)
    tok.save_pretrained(folder)
    return folder


BERT_WORDS = (
    "a an the of and with on in is this that photo picture image render object shape red green blue "
    "white black metal wood stone plastic glass chair table sphere cube car house tree small large shiny "
    "rough smooth what material made color colour there"
).split()


def write_bert_tokenizer(folder: Path) -> Path:
    """A WordPiece (BERT) tokenizer from an in-memory vocab.txt, as BLIP's processor uses."""
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    words = specials + list(dict.fromkeys(BERT_WORDS + letters + list(".,?!")))
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return folder


# ---- Stable Diffusion 1.x architecture ---------------------------------------------------------


def build_sd_components(seed: int = 0):
    """UNet2DConditionModel (32,64) + AutoencoderKL (16,32,32) + 2-layer CLIPTextModel, random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=16,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(  # 3 blocks: 4× down-sampling (SD's has 4 blocks, 8×)
        block_out_channels=[16, 32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        norm_num_groups=8,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            pad_token_id=1,
            vocab_size=CLIP_VOCAB_SIZE,
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        steps_offset=1,
    )
    return unet, vae, text_encoder, scheduler


def tiny_safety_checker(flag_everything: bool, seed: int = 9):
    """diffusers' StableDiffusionSafetyChecker on a tiny CLIP vision tower (32 px). Its concept
    thresholds are set so that it flags every image (`flag_everything`) or none."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                         vocab_size=CLIP_VOCAB_SIZE),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    checker = StableDiffusionSafetyChecker(cfg).eval()
    with torch.no_grad():
        checker.concept_embeds.normal_()
        checker.special_care_embeds.normal_()
        checker.concept_embeds_weights.fill_(-2.0 if flag_everything else 2.0)  # cosine ∈ [-1, 1]
        checker.special_care_embeds_weights.fill_(2.0)
    return checker, CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def save_tiny_sd(folder: Path, seed: int = 0, safety: str | None = None) -> Path:
    """A StableDiffusionPipeline folder (model_index.json + unet/vae/text_encoder/tokenizer/scheduler).

    safety None: no safety checker (saved as null, as `stable-diffusion-v1-5` community copies do);
    "flag" / "pass": a tiny StableDiffusionSafetyChecker + feature extractor that flags every image / none.
    Pixel size must be a multiple of 8 (VAE factor 4, UNet one downsample); tests use 32 px (256 px
    where the invisible watermark needs it).
    """
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    unet, vae, text_encoder, scheduler = build_sd_components(seed)
    tok_dir = write_clip_tokenizer(folder / "_tok")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    checker, extractor = tiny_safety_checker(safety == "flag") if safety else (None, None)
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=checker,
        feature_extractor=extractor,
        requires_safety_checker=safety is not None,
    )
    pipe.save_pretrained(folder)
    for p in (folder / "_tok").iterdir():
        p.unlink()
    (folder / "_tok").rmdir()
    return folder


def save_tiny_controlnet(folder: Path, sd_folder: Path, seed: int = 3) -> Path:
    """ControlNetModel.from_unet(tiny UNet), with its zero-initialised output convs given random
    weights (a freshly initialised ControlNet has exactly zero effect; a trained one does not)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    torch.manual_seed(seed)
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 32))  # 4×, as the VAE
    with torch.no_grad():
        for block in list(cn.controlnet_down_blocks) + [cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out]:
            torch.nn.init.normal_(block.weight, std=0.2)
            torch.nn.init.normal_(block.bias, std=0.2)
    cn.save_pretrained(folder)
    return folder


def save_tiny_lora(path: Path, sd_folder: Path, seed: int = 5, rank: int = 4) -> Path:
    """A diffusers-format LoRA file (`pytorch_lora_weights.safetensors`) for the tiny UNet's attention
    projections, with random non-zero A and B (peft initialises B to zero, which would be a no-op)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    path.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(path, unet_lora_layers=layers, safe_serialization=True)
    return path / "pytorch_lora_weights.safetensors"


# ---- BLIP captioning ---------------------------------------------------------------------------


def save_tiny_blip(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """BlipForConditionalGeneration (2-layer ViT 32 px + 2-layer BERT decoder) with a BlipProcessor
    (BlipImageProcessor + BertTokenizer from an in-memory WordPiece vocab), as Salesforce/blip-* ship."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    tok_dir = write_bert_tokenizer(folder / "_tok")
    tokenizer = BertTokenizer(vocab=str(tok_dir / "vocab.txt"), do_lower_case=True, model_max_length=32)
    assert len(tokenizer) > 50, "BertTokenizer ignored the vocabulary"
    tokenizer.bos_token = "[CLS]"  # BLIP decodes from [CLS]/bos like the Hub checkpoints' "[DEC]"
    vocab = len(tokenizer)
    cfg = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=image_size, patch_size=8, initializer_range=0.02),  # default 1e-10 ≈ blind
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, encoder_hidden_size=32,
                         bos_token_id=tokenizer.cls_token_id, pad_token_id=tokenizer.pad_token_id,
                         sep_token_id=tokenizer.sep_token_id, eos_token_id=tokenizer.sep_token_id),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # like a trained captioner: words, not [PAD]/[UNK]/[MASK], and no early [SEP]
        bias = model.text_decoder.cls.predictions.bias
        bias[[tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.mask_token_id, tokenizer.cls_token_id,
              tokenizer.sep_token_id]] = -30.0
        for name, p in model.text_decoder.named_parameters():  # make the words depend on the image
            if "crossattention" in name and name.endswith("weight") and p.ndim == 2:
                p.normal_(0.0, 0.5)
    model.generation_config.max_new_tokens = 8
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    for p in tok_dir.iterdir():
        p.unlink()
    tok_dir.rmdir()
    return folder


# ---- IP-Adapter (h94/IP-Adapter layout: models/<weights>.safetensors + models/image_encoder/) ----------


def save_tiny_ip_adapter(folder: Path, sd_folder: Path, seed: int = 7, image_size: int = 32) -> Path:
    """An IP-Adapter for the tiny UNet in h94/IP-Adapter's layout: `models/ip-adapter_sd15.safetensors`
    (image_proj: 4 image tokens from the CLIP image embedding; ip_adapter: to_k_ip/to_v_ip for every
    cross-attention, numbered 1, 3, 5, … as the original checkpoints) and `models/image_encoder/`
    (a 2-layer CLIPVisionModelWithProjection)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    unet_cfg = UNet2DConditionModel.load_config(sd_folder, subfolder="unet")
    cross = unet_cfg["cross_attention_dim"]
    torch.manual_seed(seed)
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=image_size,
        patch_size=8, projection_dim=32))
    enc.save_pretrained(folder / "models" / "image_encoder")
    unet = UNet2DConditionModel.from_config(unet_cfg)
    g = torch.Generator().manual_seed(seed)
    sd = {
        "image_proj.proj.weight": torch.randn(4 * cross, 32, generator=g) * 0.2,
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key = 1
    blocks = list(unet_cfg["block_out_channels"])
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            if name.startswith("mid_block"):
                hidden = blocks[-1]
            elif name.startswith("up_blocks"):
                hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
            else:
                hidden = blocks[int(name[len("down_blocks.")])]
            sd[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.3
            sd[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.3
            key += 2
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "models" / "ip-adapter_sd15.safetensors"))
    return folder


# ---- Stable Video Diffusion (image → video) ------------------------------------------------------------


def save_tiny_svd(folder: Path, seed: int = 0) -> Path:
    """A StableVideoDiffusionPipeline folder: UNetSpatioTemporalConditionModel (32,64), a 2-block
    AutoencoderKLTemporalDecoder, a 2-layer CLIPVisionModelWithProjection (224 px, 32 px patches), the SVD Euler
    (v-prediction, Karras) scheduler and a CLIPImageProcessor — the layout of
    stabilityai/stable-video-diffusion-img2vid-xt."""
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=8, projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
        timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                       down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], latent_channels=4)
    torch.manual_seed(seed + 2)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        intermediate_size=37, patch_size=32))  # SVD always resizes the conditioning image to 224 px
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler,
                                        feature_extractor=CLIPImageProcessor(crop_size=32, size=32))
    pipe.save_pretrained(folder)
    return folder


# ---- Stable Diffusion 3 (flow matching, MMDiT) ----------------------------------------------------------


def save_tiny_sd3(folder: Path, seed: int = 0) -> Path:
    """A StableDiffusion3Pipeline folder: 1-layer SD3Transformer2DModel, two 2-layer
    CLIPTextModelWithProjection + BPE tokenizers, no T5 (SD3 runs without its third encoder, as the
    `text_encoder_3=None` option of the real pipeline), a 2-block 16-channel AutoencoderKL, FlowMatchEuler."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, num_layers=1, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=64, pooled_projection_dim=64, out_channels=16)
    cfg = CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
                         num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=CLIP_VOCAB_SIZE,
                         hidden_act="gelu", projection_dim=32)
    torch.manual_seed(seed + 1)
    te1 = CLIPTextModelWithProjection(cfg)
    te2 = CLIPTextModelWithProjection(cfg)
    torch.manual_seed(seed + 2)
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 8), layers_per_block=1,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=16, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tok"))
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                    text_encoder=te1, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok,
                                    text_encoder_3=None, tokenizer_3=None)
    pipe.save_pretrained(folder)
    for p in (folder / "_tok").iterdir():
        p.unlink()
    (folder / "_tok").rmdir()
    return folder


# ---- SDXL ------------------------------------------------------------------------------------------------


def save_tiny_sdxl(folder: Path, seed: int = 0) -> Path:
    """A StableDiffusionXLPipeline folder: text_time-conditioned UNet (cross-attention 64 = two 32-wide
    CLIP encoders, the second with projection), tiny VAE, Euler scheduler."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=16)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(block_out_channels=[16, 32, 32], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                        latent_channels=4, norm_num_groups=8)
    cfg = CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
                         num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=CLIP_VOCAB_SIZE,
                         hidden_act="gelu", projection_dim=32)
    torch.manual_seed(seed + 2)
    te1, te2 = CLIPTextModel(cfg), CLIPTextModelWithProjection(cfg)
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tok"))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok,
                                     unet=unet, scheduler=scheduler, add_watermarker=False)
    pipe.save_pretrained(folder)
    for p in (folder / "_tok").iterdir():
        p.unlink()
    (folder / "_tok").rmdir()
    return folder


# ---- LLaVA-class vision-language model ----------------------------------------------------------------------

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() }}: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "\n{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def save_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """LlavaForConditionalGeneration (2-layer CLIP vision tower at 32 px + MLP projector + 2-layer Llama)
    with a LlavaProcessor (CLIPImageProcessor + the offline CLIP BPE tokenizer plus an `<image>` token,
    and a USER/ASSISTANT chat template like llava-hf/llava-1.5-7b-hf's). The real checkpoints use a
    SentencePiece Llama tokenizer; the processor/model code path is the same."""
    from transformers import (CLIPImageProcessor, CLIPTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tok", max_length=512))
    from tokenizers import decoders

    tok.backend_tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_token_id = tok.convert_tokens_to_ids("<image>")
    # like a trained model: answer in whole lower-case words (no stray bytes, no immediate end-of-text)
    vocab = tok.get_vocab()
    suppress = sorted(i for t, i in vocab.items() if not (t.endswith("</w>") and t[:-4].isascii() and t[:-4].isalpha()))
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                       image_size=32, patch_size=8, projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        image_token_id=image_token_id, vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # let the answer depend on the image, as a trained projector does
        for p in model.model.multi_modal_projector.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 1.0)
    model.generation_config.suppress_tokens = suppress
    model.generation_config.max_new_tokens = 8
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                               tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                               chat_template=LLAVA_CHAT_TEMPLATE, num_additional_image_tokens=1)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    for p in (folder / "_tok").iterdir():
        p.unlink()
    (folder / "_tok").rmdir()
    return folder


# ---- AnimateDiff motion adapter (text → video on an SD 1.x base) -------------------------------------------


def save_tiny_motion_adapter(folder: Path, seed: int = 11) -> Path:
    """A MotionAdapter matching the tiny SD UNet's (32, 64) blocks (guoyww/animatediff-motion-adapter-* layout)."""
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=2, motion_norm_num_groups=2,
                  motion_num_attention_heads=4).save_pretrained(folder)
    return folder
