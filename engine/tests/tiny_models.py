"""Tiny random models built locally, for tests that need real training in seconds.

    python -m engine.tests.tiny_models llama OUT_DIR     # 2-layer Llama with SmolLM2's tokenizer and chat template
    python -m engine.tests.tiny_models wide OUT_DIR      # the same with wider random weights: answers that vary
    python -m engine.tests.tiny_models looping OUT_DIR   # the same, trained to answer with one sentence over and over
    python -m engine.tests.tiny_models terse OUT_DIR     # the same, trained so that plain greedy stops after one sentence
    python -m engine.tests.tiny_models gpt2 OUT_DIR      # 2-layer GPT-2, 128 positions, no chat template (plain format)
    python -m engine.tests.tiny_models gpt2-wide OUT_DIR # the same with wider random weights: answers that vary
    python -m engine.tests.tiny_models t5 OUT_DIR        # 2-layer T5 encoder-decoder (seq2seq format)
    python -m engine.tests.tiny_models t5-wide OUT_DIR   # the same with wider random weights: answers that vary
    python -m engine.tests.tiny_models bart OUT_DIR      # 2-layer BART encoder-decoder (seq2seq format)
    python -m engine.tests.tiny_models bart-wide OUT_DIR # the same with wider random weights: answers that vary

Nothing here touches the network: the Llamas' tokenizer comes from the cached conversion of the
default model's GGUF (engine.models.ensure_default_model); the GPT-2s, T5s and BARTs train a small
BPE of their own.
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


def build_wide_llama(folder: Path, tokenizer=None) -> Path:
    """The tiny Llama with wider random weights (std 0.5): its init (std 0.02, tied embeddings) only ever
    repeats the last prompt token, which would make any comparison of answers pass trivially; with these
    weights attention decides the tokens, so different prompts get different answers."""
    import torch
    from transformers import AutoModelForCausalLM

    build_tiny_llama(folder, tokenizer)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.5)
    model.save_pretrained(folder)
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
    build_tiny_llama(folder, tokenizer)
    return train_answers(folder, [" ".join([LOOP_SENTENCE] * 3)], steps, with_end=False)


TERSE_FIRST = "Yes, it fits."
# What follows the first sentence in the answers that go on; each starts with its own word.
TERSE_MORE = ["It has the same size.", "The part number is 42.", "You need no tools.", "Mine fits well.",
              "We use it daily.", "Our model is new."]


def train_answers(folder: Path, answers: list[str], steps: int, with_end: bool) -> Path:
    """Trains the tiny Llama in `folder` on every question of LOOP_QUESTIONS with each of `answers`, loss on
    the answer (and its end token when `with_end`), full batch, Adam at 5e-3; saves it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.export import end_token_ids
    from engine.prompts import PromptEncoder

    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt=None)
    end = end_token_ids(tokenizer, encoder.format)[:1] if with_end else []
    pairs = [(encoder.prompt_ids(question), tokenizer(answer, add_special_tokens=False)["input_ids"] + end)
             for question in LOOP_QUESTIONS for answer in answers]
    width = max(len(prompt) + len(answer) for prompt, answer in pairs)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([p + a + [pad] * (width - len(p) - len(a)) for p, a in pairs])
    labels = torch.tensor([[-100] * len(p) + a + [-100] * (width - len(p) - len(a)) for p, a in pairs])
    attention_mask = torch.tensor([[1] * (len(p) + len(a)) + [0] * (width - len(p) - len(a)) for p, a in pairs])
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    # The loss of `labels=`, with the output layer run only where a label is: most positions are prompt,
    # and a 49k-token output layer over them is most of the cost.
    targets = labels[:, 1:]
    scored = targets != -100
    model.train()
    for _ in range(steps):
        hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
        torch.nn.functional.cross_entropy(model.lm_head(hidden[scored]), targets[scored]).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(folder)
    return folder


def build_terse_llama(folder: Path, tokenizer=None, steps: int = 120) -> Path:
    """The tiny Llama trained on answers that all start with TERSE_FIRST: 4 in 10 end there, the other 6
    go on with one of TERSE_MORE each. After the first sentence the end token has about 0.4 of the
    probability and each way to go on about 0.1, so plain greedy decoding ends every answer there: the
    short answers a tuned model gives on real customer data, which `endProbability` 0.5 lengthens."""
    build_tiny_llama(folder, tokenizer)
    answers = [TERSE_FIRST] * 4 + [f"{TERSE_FIRST} {more}" for more in TERSE_MORE]
    return train_answers(folder, answers, steps, with_end=True)


def build_tiny_gpt2(folder: Path, sentences: list[str], positions: int = 256, std: float | None = None) -> Path:
    """A random 2-layer GPT-2 with a byte-level BPE trained on `sentences`; no chat template, so it is
    prompted in the plain format. `positions`: n_positions, its longest context. `std`: redraw the
    weight matrices with this spread (as build_wide_llama, so greedy answers vary)."""
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
        n_positions=positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    if std is not None:
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.dim() == 2:
                    parameter.normal_(0.0, std)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# Support sentences the tiny GPT-2's tokenizer learns its merges from; any text still encodes (byte level).
GPT2_SENTENCES = [
    "How do I reset my router?",
    "Hold the power button for ten seconds until the light blinks.",
    "How long is the warranty on the headphones?",
    "The headphones have a two year warranty.",
    "Can I return the smart watch?",
    "Yes, you can return it within 30 days for a full refund.",
    "Why won't my e-reader turn on? Charge it for an hour, then hold the power button.",
    "Does the webcam work with a laptop? It works with any computer that has a USB port.",
]


def build_plain_gpt2(folder: Path) -> Path:
    """The tiny GPT-2 with 128 positions (fewer than the forgetting check's 512-token windows)."""
    return build_tiny_gpt2(folder, GPT2_SENTENCES * 4, positions=128)


def build_wide_gpt2(folder: Path) -> Path:
    """The tiny GPT-2 with wider random weights (std 0.5): greedy answers that differ by prompt."""
    return build_tiny_gpt2(folder, GPT2_SENTENCES * 4, positions=128, std=0.5)


# The special tokens of the encoder-decoder tokenizers, in id order (as the real T5 and BART vocabularies
# number them), and the template their post-processor wraps every encoded text in.
T5_SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]
BART_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]


def seq2seq_tokenizer(sentences: list[str], special_tokens: list[str], template: str):
    """A byte-level BPE trained on `sentences` whose post-processor wraps a text as `template` does
    (`$A </s>` for T5, `<s> $A </s>` for BART), so `add_special_tokens=True` gives the model's encoder ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(sentences, trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(token, bpe.token_to_id(token)) for token in special_tokens if token in template]
    )
    named = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    if "<s>" in special_tokens:
        named["bos_token"] = "<s>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, **named)
    assert [tokenizer.convert_tokens_to_ids(token) for token in special_tokens] == list(range(len(special_tokens)))
    return tokenizer


def save_seq2seq(folder: Path, model, tokenizer, std: float | None) -> Path:
    """Save the model (its weight matrices redrawn with spread `std`, as build_wide_llama) and tokenizer."""
    import torch

    if std is not None:
        torch.manual_seed(1)
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.dim() == 2:
                    parameter.normal_(0.0, std)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_t5(folder: Path, sentences: list[str] | None = None, std: float | None = None) -> Path:
    """A random 2-layer T5 (encoder and decoder), tied embeddings; the decoder starts at the pad id, 0."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = seq2seq_tokenizer(sentences or GPT2_SENTENCES * 4, T5_SPECIAL_TOKENS, "$A </s>")
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return save_seq2seq(folder, T5ForConditionalGeneration(config), tokenizer, std)


def build_tiny_bart(folder: Path, sentences: list[str] | None = None, std: float | None = None) -> Path:
    """A random 2-layer BART (encoder and decoder), 128 positions; the decoder starts at the eos id, 2."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    tokenizer = seq2seq_tokenizer(sentences or GPT2_SENTENCES * 4, BART_SPECIAL_TOKENS, "<s> $A </s>")
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        # BART's own 0.02 leaves the tied output layer so small that its logits hardly move unless the
        # embeddings train: LoRA's loss would barely fall. At 0.1 it falls as under full fine-tuning.
        init_std=0.1,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    return save_seq2seq(folder, BartForConditionalGeneration(config), tokenizer, std)


if __name__ == "__main__":
    builders = {
        "llama": build_tiny_llama,
        "wide": build_wide_llama,
        "looping": build_looping_llama,
        "terse": build_terse_llama,
        "gpt2": build_plain_gpt2,
        "gpt2-wide": build_wide_gpt2,
        "t5": build_tiny_t5,
        "t5-wide": lambda folder: build_tiny_t5(folder, std=0.5),
        "bart": build_tiny_bart,
        "bart-wide": lambda folder: build_tiny_bart(folder, std=0.5),
    }
    if len(sys.argv) != 3 or sys.argv[1] not in builders:
        sys.exit(f"usage: python -m engine.tests.tiny_models {'|'.join(builders)} OUT_DIR")
    print(builders[sys.argv[1]](Path(sys.argv[2])))
