"""A tiny Llama with random weights, generated locally (never downloaded).

2 layers, hidden size 128, 4 heads (head size 32, which vLLM's CPU attention backend
supports), vocabulary 1000. Saved once with transformers' ``save_pretrained`` under
``$KVCLAIMS_MODEL_DIR`` or ``~/.cache/kvclaims/tiny-llama`` and reused afterwards. The
Scheduler-level driver reads only its ``config.json``; the engine driver loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

TINY_LLAMA = dict(
    vocab_size=1000,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=4096,
    bos_token_id=1,
    eos_token_id=2,
)
SEED = 20260601


def model_dir() -> Path:
    env = os.environ.get("KVCLAIMS_MODEL_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "kvclaims" / "tiny-llama"


def ensure_tiny_llama(path: str | os.PathLike[str] | None = None) -> Path:
    """The tiny model's directory, generating it first if it is not there yet."""
    target = Path(path) if path is not None else model_dir()
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    model = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA))
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a concurrent or interrupted run never
    # leaves a half-written model behind.
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    model.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    return target
