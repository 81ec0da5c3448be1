"""Tiny random models built locally, for tests that need real training in seconds.

    python -m engine.tests.tiny_models llama OUT_DIR   # 2-layer Llama with SmolLM2's tokenizer and chat template

Nothing here touches the network: the tokenizer comes from the cached conversion of the default
model's GGUF (engine.models.ensure_default_model).
"""

import sys
from pathlib import Path


def build_tiny_llama(folder: Path, tokenizer=None) -> Path:
    """A random 2-layer Llama with SmolLM2's real tokenizer and chat template, saved to `folder`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer is None:
        from engine.models import ensure_default_model

        tokenizer = AutoTokenizer.from_pretrained(ensure_default_model())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "llama":
        sys.exit("usage: python -m engine.tests.tiny_models llama OUT_DIR")
    print(build_tiny_llama(Path(sys.argv[2])))
