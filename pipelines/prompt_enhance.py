"""Prompt enhancement: route-specific templates, and optionally a registered text model.

Templates are deterministic and need no weights: they add what each route's models respond to
(e.g. text → 3D wants one centred object on a plain background, fully in view). With a text model
(`model="prompt-llm"` or any registered causal LM), the model rewrites the prompt under a route
instruction first, then the template applies. The original and the enhanced prompt are both
returned so callers record them in the asset metadata.
"""
from __future__ import annotations

from dataclasses import dataclass

TEMPLATES: dict[str, str] = {
    "text_to_image": "{prompt}, highly detailed, sharp focus, natural lighting",
    "text_to_3d": "{prompt}, a single object, centered, fully in view, plain white background, soft studio lighting, "
                  "3D render, no text",
    "texture": "{prompt}, seamless tileable texture, flat lighting, top-down, high detail",
    "video": "{prompt}, smooth camera motion, consistent lighting",
}

INSTRUCTIONS: dict[str, str] = {
    "text_to_image": "Rewrite this image prompt to be vivid and specific in under 40 words. Prompt:",
    "text_to_3d": "Describe this single object for a 3D asset generator: its shape, materials and colours, in under "
                  "40 words, no background or scene. Object:",
    "texture": "Describe this surface material for a tileable texture in under 30 words. Material:",
    "video": "Rewrite this video prompt with subject, motion and camera in under 40 words. Prompt:",
}


@dataclass(frozen=True)
class EnhancedPrompt:
    original: str
    prompt: str
    route: str
    model: str | None = None

    def metadata(self) -> dict[str, str]:
        d = {"prompt_original": self.original, "prompt_enhanced": self.prompt, "prompt_route": self.route}
        return d | ({"prompt_model": self.model} if self.model else {})


def enhance_prompt(prompt: str, route: str = "text_to_image", model: str | None = None, *, local_path=None,
                   allow_network: bool = False, max_new_tokens: int = 60, seed: int = 0) -> EnhancedPrompt:
    """Enhance `prompt` for `route` (one of TEMPLATES). With `model`, a registered causal LM rewrites
    it first (greedy decoding, deterministic); a missing model raises ModelUnavailableError."""
    from .generation_common import check_prompt

    if route not in TEMPLATES:
        raise ValueError(f"unknown route {route!r}; use one of {sorted(TEMPLATES)}")
    check_prompt(prompt)  # blocked content never reaches a model
    text = " ".join(prompt.split())
    used = None
    if model is not None:
        text = _rewrite(text, route, model, local_path, allow_network, max_new_tokens, seed) or text
        used = model
        check_prompt(text)
    return EnhancedPrompt(original=prompt, prompt=TEMPLATES[route].format(prompt=text), route=route, model=used)


def _rewrite(text: str, route: str, model: str, local_path, allow_network: bool, max_new_tokens: int, seed: int) -> str:
    import torch

    from studio.models import get_pipeline, resolve

    folder = resolve(model, local_path=local_path, allow_network=allow_network)

    def load():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()

    tok, lm = get_pipeline(f"prompt-llm:{folder}", load)
    query = f"{INSTRUCTIONS[route]} {text}\nAnswer:"
    if getattr(tok, "chat_template", None):
        query = tok.apply_chat_template([{"role": "user", "content": f"{INSTRUCTIONS[route]} {text}"}], tokenize=False,
                                        add_generation_prompt=True)
    inputs = tok(query, return_tensors="pt")
    torch.manual_seed(seed)
    with torch.no_grad():
        out = lm.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return " ".join(answer.replace("\n", " ").split()).strip(" .,\"'")
