"""The loss mask covers exactly the answer and the token that ends it."""

from transformers import AutoTokenizer

from engine.prompts import IGNORE_INDEX, SEPARATOR_TOKEN, Grounding, PromptEncoder, PromptFormat, grounded_question


def labelled_ids(example) -> list[int]:
    return [label for label in example.labels if label != IGNORE_INDEX]


def test_chat_template_mask_is_answer_and_end_of_turn(smollm2_tokenizer):
    encoder = PromptEncoder.prepare_tokenizer(smollm2_tokenizer, system_prompt="You answer for Acme support.")
    assert encoder.format == PromptFormat("chat_template", "You answer for Acme support.", None, "<|im_end|>")
    example = encoder.encode("How do I reset my router?", "Hold the button for 10 seconds.", max_length=256)
    assert smollm2_tokenizer.decode(labelled_ids(example)) == "Hold the button for 10 seconds.<|im_end|>"
    prompt_length = example.labels.index(next(l for l in example.labels if l != IGNORE_INDEX))
    assert smollm2_tokenizer.decode(example.input_ids[:prompt_length]) == (
        "<|im_start|>system\nYou answer for Acme support.<|im_end|>\n"
        "<|im_start|>user\nHow do I reset my router?<|im_end|>\n<|im_start|>assistant\n"
    )
    # Masked positions are exactly the prompt; labels equal the inputs where they are kept.
    assert all(l == IGNORE_INDEX for l in example.labels[:prompt_length])
    assert example.labels[prompt_length:] == example.input_ids[prompt_length:]
    assert example.input_ids[:prompt_length] == encoder.prompt_ids("How do I reset my router?")


def test_without_system_prompt_the_template_default_is_used(smollm2_tokenizer):
    encoder = PromptEncoder.prepare_tokenizer(smollm2_tokenizer, system_prompt=None)
    prompt = smollm2_tokenizer.decode(encoder.prompt_ids("Hi?"))
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert prompt.endswith("<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")


def test_truncation_keeps_prompt_and_end_of_turn(smollm2_tokenizer):
    encoder = PromptEncoder.prepare_tokenizer(smollm2_tokenizer, system_prompt="S")
    prompt = encoder.prompt_ids("Q?")
    example = encoder.encode("Q?", "word " * 200, max_length=len(prompt) + 6)
    assert example.truncated and len(example.input_ids) == len(prompt) + 6
    assert example.input_ids[: len(prompt)] == prompt
    assert example.input_ids[-1] == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert len(labelled_ids(example)) == 6
    assert encoder.encode("Q? " * 100, "A", max_length=16) is None  # the prompt alone does not fit


def test_plain_format_for_models_without_chat_template(tiny_gpt2_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    vocabulary = len(tokenizer)
    encoder = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt=None)
    assert encoder.format == PromptFormat("plain", None, SEPARATOR_TOKEN, "<|endoftext|>")
    assert len(tokenizer) == vocabulary + 1 and tokenizer.pad_token == "<|endoftext|>"
    example = encoder.encode("Can I return the webcam?", "Yes, within 30 days.", max_length=64)
    separator = tokenizer.convert_tokens_to_ids(SEPARATOR_TOKEN)
    cut = example.input_ids.index(separator) + 1
    assert tokenizer.decode(example.input_ids[:cut]) == f"Can I return the webcam?{SEPARATOR_TOKEN}"
    assert all(l == IGNORE_INDEX for l in example.labels[:cut])
    assert labelled_ids(example) == example.input_ids[cut:]
    assert tokenizer.decode(labelled_ids(example)) == "Yes, within 30 days.<|endoftext|>"
    assert example.input_ids[-1] == tokenizer.eos_token_id


def test_seq2seq_format_encodes_the_prompt_for_the_encoder_and_the_answer_for_the_decoder(tiny_t5_dir, tiny_bart_dir):
    for folder, wrap in ((tiny_t5_dir, ("", "</s>")), (tiny_bart_dir, ("<s>", "</s>"))):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        vocabulary = len(tokenizer)
        encoder = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt="Be brief.", encoder_decoder=True)
        assert encoder.format == PromptFormat("seq2seq", "Be brief.", None, "</s>")
        assert len(tokenizer) == vocabulary  # no token added
        example = encoder.encode("Can I return the webcam?", "Yes, within 30 days.", max_length=64)
        assert example.encoder_decoder and not example.truncated
        # Encoder: the prompt text with the tokenizer's own special tokens, exactly prompt_ids.
        assert example.input_ids == encoder.prompt_ids("Can I return the webcam?")
        assert example.input_ids == tokenizer("Be brief.\n\nCan I return the webcam?")["input_ids"]
        assert tokenizer.decode(example.input_ids) == f"{wrap[0]}Be brief.\n\nCan I return the webcam?{wrap[1]}"
        assert example.input_ids[-1] == tokenizer.eos_token_id
        # Decoder target: the answer and eos, every token in the loss.
        assert example.labels == tokenizer("Yes, within 30 days.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert IGNORE_INDEX not in example.labels


def test_seq2seq_truncation_cuts_the_answer_and_keeps_both_eos(tiny_t5_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5_dir)
    encoder = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt=None, encoder_decoder=True)
    prompt = encoder.prompt_ids("Q?")
    # maxLength bounds encoder and decoder tokens together.
    example = encoder.encode("Q?", "word " * 200, max_length=len(prompt) + 6)
    assert example.truncated and example.input_ids == prompt and prompt[-1] == tokenizer.eos_token_id
    assert len(example.labels) == 6 and example.labels[-1] == tokenizer.eos_token_id
    assert example.labels[:5] == tokenizer("word " * 200, add_special_tokens=False)["input_ids"][:5]
    assert encoder.encode("Q? " * 100, "A", max_length=16) is None  # the prompt alone does not fit
    # Known pairs are dropped before the answer is cut, as in the other formats.
    pairs = [{"question": "Q1?", "answer": "A1."}, {"question": "Q2?", "answer": "A2."}]
    room = len(encoder.prompt_ids("Q?", pairs[:1])) + len(encoder.answer_ids("Q?", "It is.")) + 1
    squeezed = encoder.encode("Q?", "It is.", max_length=room, context=pairs)
    assert squeezed.contextPairs == 1 and not squeezed.truncated and squeezed.input_ids == encoder.prompt_ids("Q?", pairs[:1])


def test_prompt_format_round_trips(tmp_path):
    original = PromptFormat("plain", "Be brief.", SEPARATOR_TOKEN, "<|endoftext|>")
    original.save(tmp_path)
    assert PromptFormat.load(tmp_path) == original


PAIRS = [
    {"question": "Does the {Nimbus} router do WPA3?", "answer": "Yes, WPA3-Personal."},
    {"question": "How long is the warranty?", "answer": "Two years."},
]


def test_a_grounded_question_carries_its_known_pairs_in_the_recorded_templates():
    grounding = Grounding()
    text = grounded_question("Is the router {new}?", PAIRS, grounding)
    assert text == (
        "Answers to similar questions from our support records:\n\n"
        "Q: Does the {Nimbus} router do WPA3?\nA: Yes, WPA3-Personal.\n\n"
        "Q: How long is the warranty?\nA: Two years.\n\n"
        "Customer question: Is the router {new}?"
    )  # braces in the text stay: the templates are filled in one pass
    assert grounded_question("Q?", [], grounding) == "Q?"
    assert grounded_question("Q?", PAIRS, None) == "Q?"


def test_grounded_prompts_mask_only_the_answer_and_drop_pairs_before_the_answer(smollm2_tokenizer):
    encoder = PromptEncoder.prepare_tokenizer(smollm2_tokenizer, system_prompt="S")
    example = encoder.encode("Is the router new?", "It is.", max_length=256, context=PAIRS)
    assert example.contextPairs == 2
    assert smollm2_tokenizer.decode(labelled_ids(example)) == "It is.<|im_end|>"
    prompt = smollm2_tokenizer.decode(example.input_ids[: len(example.input_ids) - len(labelled_ids(example))])
    assert "Q: How long is the warranty?\nA: Two years." in prompt and prompt.endswith("<|im_start|>assistant\n")
    # When prompt and answer do not fit, pairs go first, from the last, before a single answer token is cut.
    one_pair = len(encoder.prompt_ids("Is the router new?", PAIRS[:1])) + len(encoder.answer_ids("Q", "It is.")) + 1
    squeezed = encoder.encode("Is the router new?", "It is.", max_length=one_pair, context=PAIRS)
    assert squeezed.contextPairs == 1 and not squeezed.truncated
    assert smollm2_tokenizer.decode(labelled_ids(squeezed)) == "It is.<|im_end|>"


def test_the_recorded_grounding_round_trips_and_old_formats_have_none(tmp_path):
    grounded = PromptFormat("chat_template", None, None, "<|im_end|>", Grounding(template="{pairs} | {question}"))
    grounded.save(tmp_path)
    assert PromptFormat.load(tmp_path) == grounded
    (tmp_path / "prompt_format.json").write_text('{"kind": "plain", "systemPrompt": null, "separator": "<|answer|>", "endOfTurn": "</s>"}')
    assert PromptFormat.load(tmp_path).grounding is None
