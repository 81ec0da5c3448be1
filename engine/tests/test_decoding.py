"""engine/decoding.py, the PyTorch reference of serve/'s decoding controls: the sentence rule on the cases
serve/ is tested on too, the processors against transformers' own on the answer's tokens only, greedy
decoding of a tiny model made to loop, with and without the controls, and the end rule on a tiny model
that plain greedy decoding cuts short.
"""

import json

import pytest
import torch

from engine.decoding import DecodingControls, answer_only, greedy_answer, normalised_sentence, repeated_sentence_cut, serve_decoder
from engine.events import ConfigError

from .conftest import PROJECT_ROOT

SENTENCE_CASES = json.loads((PROJECT_ROOT / "test" / "fixtures" / "repeated-sentences.json").read_text())["cases"]
QUESTIONS = ["How do I reset my router?", "Hi", "Can I return the smart watch if the strap broke after two weeks?"]
NEW_TOKENS = 48


@pytest.mark.parametrize("case", SENTENCE_CASES, ids=[case["why"] for case in SENTENCE_CASES])
def test_repeated_sentence_cut_on_the_shared_cases(case):
    assert repeated_sentence_cut(case["text"], case["ended"]) == case["cut"]


def test_normalised_sentence():
    assert normalised_sentence("  I DON'T   know!! ") == "i dont know"
    assert normalised_sentence("\u00abOui\u00bb,\u3000merci") == "oui merci"
    assert normalised_sentence("...") == ""


def test_controls_report_every_problem_at_once():
    with pytest.raises(ConfigError) as caught:
        DecodingControls(repetition_penalty=0.9, no_repeat_ngram_size=-1, stop_on_repetition="yes")
    message = str(caught.value)
    assert "repetitionPenalty: 0.9" in message and "noRepeatNgramSize: -1" in message and "stopOnRepetition: 'yes'" in message
    with pytest.raises(ConfigError, match="repetitionPenalty: nan"):
        DecodingControls(repetition_penalty=float("nan"))
    with pytest.raises(ConfigError, match=r"endProbability: 1; must be a number in \(0, 1\)"):
        DecodingControls(end_probability=1)
    assert DecodingControls.from_options({}) == DecodingControls(1.0, 0, False, None)
    options = {"repetitionPenalty": 1.3, "noRepeatNgramSize": 3, "stopOnRepetition": True, "endProbability": 0.5}
    assert DecodingControls.from_options(options) == DecodingControls(1.3, 3, True, 0.5)


def test_penalty_counts_the_answer_only():
    from transformers import RepetitionPenaltyLogitsProcessor

    prompt, answer = [0, 1], [2, 2, 3]
    scores = torch.tensor([[4.0, -4.0, 2.0, -1.0, 5.0]])
    ids = torch.tensor([prompt + answer])
    penalised = answer_only(RepetitionPenaltyLogitsProcessor(2.0), len(prompt))(ids, scores.clone())
    # Tokens 2 and 3 (once each, though 2 came twice); the prompt's 0 and 1 keep their logits.
    assert penalised.tolist() == [[4.0, -4.0, 1.0, -2.0, 5.0]]
    library = RepetitionPenaltyLogitsProcessor(2.0, prompt_ignore_length=len(prompt))(ids, scores.clone())
    assert torch.equal(penalised, library)  # the library's own option agrees
    assert torch.equal(answer_only(RepetitionPenaltyLogitsProcessor(2.0), 5)(ids, scores.clone()), scores)  # nothing generated yet


def test_ngram_ban_counts_the_answer_only():
    from transformers import NoRepeatNGramLogitsProcessor

    scores = torch.zeros(1, 8)
    prompt = [5, 6, 7, 5, 6]  # the library alone would ban 7 after "5 6"
    assert NoRepeatNGramLogitsProcessor(3)(torch.tensor([prompt]), scores.clone())[0, 7] == -float("inf")
    banned = answer_only(NoRepeatNGramLogitsProcessor(3), len(prompt))(torch.tensor([prompt + [1, 2, 3, 1, 2]]), scores.clone())
    assert torch.isinf(banned[0]).nonzero().flatten().tolist() == [3]  # "1 2" was followed by 3; 7 is free
    unigram = answer_only(NoRepeatNGramLogitsProcessor(1), len(prompt))(torch.tensor([prompt + [1, 4]]), scores.clone())
    assert torch.isinf(unigram[0]).nonzero().flatten().tolist() == [1, 4]


def test_serve_decoder_cleans_up_as_serve_does(smollm2_tokenizer):
    ids = smollm2_tokenizer("Hello . I do n't know ?", add_special_tokens=False)["input_ids"]
    assert serve_decoder(smollm2_tokenizer)(ids) == "Hello. I don't know?"
    assert serve_decoder(smollm2_tokenizer)([]) == ""


def tiny_decoder(folder, questions):
    """(model, tokenizer, prompt ids per question, end ids) of the tiny model in `folder`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.export import end_token_ids
    from engine.prompts import PromptEncoder

    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt=None)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, tokenizer, [encoder.prompt_ids(question) for question in questions], end_token_ids(tokenizer, encoder.format)


@pytest.fixture(scope="module")
def looping(tmp_path_factory, smollm2_tokenizer):
    """The tiny Llama made to loop."""
    from engine.tests.tiny_models import build_looping_llama

    return tiny_decoder(build_looping_llama(tmp_path_factory.mktemp("looping"), smollm2_tokenizer), QUESTIONS)


@pytest.fixture(scope="module")
def terse(tmp_path_factory, smollm2_tokenizer):
    """The tiny Llama whose answers end after their first sentence 4 times in 10."""
    from engine.tests.tiny_models import LOOP_QUESTIONS, build_terse_llama

    return tiny_decoder(build_terse_llama(tmp_path_factory.mktemp("terse"), smollm2_tokenizer), LOOP_QUESTIONS)


def answers(looping, **controls):
    model, tokenizer, prompts, eos = looping
    return [greedy_answer(model, tokenizer, ids, NEW_TOKENS, eos, tokenizer.pad_token_id, DecodingControls(**controls)) for ids in prompts]


def most_repeated_ngram(tokens: list[int], size: int) -> int:
    counts: dict = {}
    for start in range(len(tokens) - size + 1):
        key = tuple(tokens[start : start + size])
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)


def test_plain_greedy_loops_and_equals_the_export_reference(looping):
    from engine.export import torch_greedy

    model, tokenizer, prompts, eos = looping
    for prompt, answer in zip(prompts, answers(looping)):
        assert answer.tokens == torch_greedy(model, prompt, NEW_TOKENS, eos, tokenizer.pad_token_id)
        assert answer.finish_reason == "length" and len(answer.tokens) == NEW_TOKENS
        assert most_repeated_ngram(answer.tokens, 3) >= 3  # the loop
        assert "flat sticker. I think it is a flat sticker." in answer.text


def test_no_repeat_ngram_size_leaves_no_ngram_twice(looping):
    for answer in answers(looping, no_repeat_ngram_size=3) + answers(looping, repetition_penalty=1.3, no_repeat_ngram_size=3):
        assert len(answer.tokens) == NEW_TOKENS
        assert most_repeated_ngram(answer.tokens, 3) == 1


def test_stop_on_repetition_ends_the_loop_before_the_repeat(looping):
    plain = answers(looping)
    for loop, stopped in zip(plain, answers(looping, stop_on_repetition=True)):
        assert stopped.finish_reason == "repetition"
        assert len(stopped.tokens) < NEW_TOKENS and stopped.tokens == loop.tokens[: len(stopped.tokens)]
        assert loop.text.startswith(stopped.text) and stopped.text.rstrip().endswith("sticker.")
        assert repeated_sentence_cut(stopped.text, ended=True) is None  # no sentence twice in what is left
        sentences = [normalised_sentence(part) for part in stopped.text.split(". ")]
        assert len(sentences) == len(set(sentences))


def test_plain_greedy_cuts_short_what_the_end_rule_lets_go_on(terse):
    from engine.tests.tiny_models import TERSE_FIRST, TERSE_MORE

    model, tokenizer, prompts, eos = terse
    first = tokenizer(TERSE_FIRST, add_special_tokens=False)["input_ids"]
    for prompt in prompts:  # the premise: after the first sentence, ending is likelier than any one word, not than going on
        with torch.no_grad():
            probabilities = torch.softmax(model(torch.tensor([prompt + first])).logits[0, -1].double(), dim=-1)
        ending = probabilities[eos].sum().item()
        assert 0.25 < ending < 0.5 and probabilities.max().item() == probabilities[eos].max().item()
    plain, ruled = answers(terse), answers(terse, end_probability=0.5)
    for short, longer in zip(plain, ruled):
        assert (short.text, short.finish_reason) == (TERSE_FIRST, "stop")
        assert longer.finish_reason == "stop" and longer.tokens[: len(short.tokens)] == short.tokens
        assert longer.text.startswith(TERSE_FIRST + " ") and longer.text[len(TERSE_FIRST) + 1 :] in TERSE_MORE
    assert answers(terse, end_probability=0.2) == plain  # below the end's 0.4: ends where plain greedy does
    assert answers(terse, repetition_penalty=1.1, no_repeat_ngram_size=4, stop_on_repetition=True, end_probability=0.5) == ruled
