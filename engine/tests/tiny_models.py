"""Tiny random models built locally, for tests that need real training in seconds.

    python -m engine.tests.tiny_models llama OUT_DIR     # 2-layer Llama with SmolLM2's tokenizer and chat template
    python -m engine.tests.tiny_models looping OUT_DIR   # the same, trained to answer with one sentence over and over

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


LOOP_SENTENCE = "I think it is a flat sticker."
LOOP_QUESTIONS = ["How do I reset my router?", "Can I return the smart watch?", "Is this sticker flat?"]


def build_looping_llama(folder: Path, tokenizer=None, steps: int = 18) -> Path:
    """The tiny Llama trained (a few seconds on CPU) to answer any question with LOOP_SENTENCE said over
    and over, never ending: the loop a tuned model falls into on real customer questions, which the
    repetition controls (serve/, engine/decoding.py) must break. Loss on the answer only, no end token.
    18 steps: greedy decoding loops, yet its margins are still small enough for a repetition penalty of
    1.3 to change some tokens (it does not break the loop alone; at 24 steps it changes nothing).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.prompts import PromptEncoder

    build_tiny_llama(folder, tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt=None)
    answer = tokenizer(" ".join([LOOP_SENTENCE] * 3), add_special_tokens=False)["input_ids"]
    prompts = [encoder.prompt_ids(question) for question in LOOP_QUESTIONS]
    width = max(map(len, prompts)) + len(answer)
    padding = [width - len(prompt) - len(answer) for prompt in prompts]
    input_ids = torch.tensor([prompt + answer + [tokenizer.pad_token_id] * pad for prompt, pad in zip(prompts, padding)])
    labels = torch.tensor([[-100] * len(prompt) + answer + [-100] * pad for prompt, pad in zip(prompts, padding)])
    attention_mask = torch.tensor([[1] * (len(prompt) + len(answer)) + [0] * pad for prompt, pad in zip(prompts, padding)])
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(folder)
    return folder


def build_tiny_gpt2(folder: Path, sentences: list[str]) -> Path:
    """A random 2-layer GPT-2 with a byte-level BPE trained on `sentences`; no chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(sentences, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    assert not tokenizer.chat_template
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    builders = {"llama": build_tiny_llama, "looping": build_looping_llama}
    if len(sys.argv) != 3 or sys.argv[1] not in builders:
        sys.exit("usage: python -m engine.tests.tiny_models llama|looping OUT_DIR")
    print(builders[sys.argv[1]](Path(sys.argv[2])))
