"""Prompt enhancement: templates per route, an optional registered text model (a tiny random GPT-2
with an offline tokenizer, loaded through the registry), blocked prompts, missing model errors."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from studio.errors import BlockedContentError, ModelUnavailableError
from studio.pipelines.prompt_enhance import TEMPLATES, enhance_prompt


def test_templates_per_route_are_deterministic_and_recorded():
    e = enhance_prompt("  a   wooden chair ", route="text_to_3d")
    assert e.prompt.startswith("a wooden chair, a single object, centered") and e.model is None
    assert e.metadata() == {"prompt_original": "  a   wooden chair ", "prompt_enhanced": e.prompt, "prompt_route": "text_to_3d"}
    assert enhance_prompt("a chair", "text_to_image").prompt == TEMPLATES["text_to_image"].format(prompt="a chair")
    with pytest.raises(ValueError, match="unknown route"):
        enhance_prompt("x", route="nope")


def test_blocked_prompt_is_refused_before_any_model(monkeypatch, tmp_path):
    (tmp_path / "blocklist.txt").write_text("forbiddenword\n")
    monkeypatch.setenv("STUDIO_BLOCKLIST", str(tmp_path / "blocklist.txt"))
    with pytest.raises(BlockedContentError):
        enhance_prompt("a forbiddenword chair", model="prompt-llm")


def test_missing_text_model_names_the_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="Qwen/Qwen2.5-0.5B-Instruct"):
        enhance_prompt("a chair", model="prompt-llm")


def test_registered_text_model_rewrites_deterministically(tmp_path, monkeypatch):
    import torch
    from transformers import CLIPTokenizer, GPT2Config, GPT2LMHeadModel

    sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers (--import-mode=importlib)
    from tiny_models import write_clip_tokenizer

    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    folder = tmp_path / "models" / "prompt-llm"
    tok_dir = write_clip_tokenizer(tmp_path / "tok")  # byte-level BPE vocab + merges, built offline
    tok = CLIPTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                    bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    lm.generation_config.suppress_tokens = [tok.eos_token_id]  # always answer something
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    a = enhance_prompt("a chair", route="text_to_3d", model="prompt-llm", max_new_tokens=8)
    b = enhance_prompt("a chair", route="text_to_3d", model="prompt-llm", max_new_tokens=8)
    assert a == b and a.model == "prompt-llm"
    assert a.prompt.endswith(TEMPLATES["text_to_3d"].split("{prompt}")[1]) and a.prompt != TEMPLATES["text_to_3d"].format(prompt="a chair")
    assert a.metadata()["prompt_model"] == "prompt-llm"
