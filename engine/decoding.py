"""The PyTorch reference of serve/'s repetition controls (the pipeline file's `decoding:` section).

The evaluation's answers come from the Node generator (serve/, onnxruntime-node); `greedy_answer` here
makes the same answer with transformers `generate()`, so tests hold the two to token-for-token
agreement, as engine/export.py does for plain greedy decoding. Same names, same semantics:

- repetition penalty: transformers' RepetitionPenaltyLogitsProcessor (the logit of every token already in
  the answer, once per token, is divided by the penalty, or multiplied when negative);
- n-gram ban: its NoRepeatNGramLogitsProcessor (a token that would complete an n-gram the answer already
  holds gets -inf), applied after the penalty, in generate()'s own order;
- stop on repetition: the answer ends once a sentence it completes repeats an earlier one of its own
  (SENTENCE_END and `normalised_sentence`; serve/repetition.ts is the Node twin, keep them in step);
- end probability: the answer ends only when its end tokens together have at least that share of the
  softmax, worked out in float64 as serve/sampling.ts `greedyWithEnd` does; until then the likeliest
  other token is picked (`EndRule`, applied after the other two).

Both processors are the library's, but they see the answer's tokens only (`AnswerOnly`). The built-in
ones count the whole sequence, prompt included, and a grounded prompt carries retrieved answers the model
should be free to quote; the penalty has `prompt_ignore_length` for that, the n-gram ban has nothing,
so one wrapper serves both. Nothing here imports torch at module level: engine/score.py uses the
sentence rule without it.
"""

import re
import unicodedata
from dataclasses import dataclass

from engine.events import ConfigError

# Spelled out rather than `\s`, which Python and JavaScript define differently for a few characters.
WHITESPACE = "[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# The end of a sentence: its end marks (group 1) and the whitespace after them, or a line break with the
# whitespace around it. The whitespace must have come, so "4.5" or "e.g." never ends a sentence.
SENTENCE_END = re.compile(rf"([.!?]+){WHITESPACE}+|{WHITESPACE}*\n{WHITESPACE}*")
WHITESPACE_RUN = re.compile(rf"{WHITESPACE}+")
# What @huggingface/tokenizers' decode rewrites with clean_up_tokenization_spaces (serve/tokenizer.ts).
CLEANUP = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"),
           (" 've", "'ve"), (" 're", "'re")]


@dataclass(frozen=True)
class DecodingControls:
    """The decoding controls; the defaults turn them all off, as in serve/'s GenerateOptions."""

    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop_on_repetition: bool = False
    end_probability: float | None = None  # None: plain argmax

    def __post_init__(self):
        problems = []
        penalty, size = self.repetition_penalty, self.no_repeat_ngram_size
        if isinstance(penalty, bool) or not isinstance(penalty, int | float) or not penalty >= 1 or penalty == float("inf"):
            problems.append(f"repetitionPenalty: {penalty!r}; must be a number >= 1 (1 turns it off)")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            problems.append(f"noRepeatNgramSize: {size!r}; must be an integer >= 0 (0 turns it off)")
        if not isinstance(self.stop_on_repetition, bool):
            problems.append(f"stopOnRepetition: {self.stop_on_repetition!r}; must be true or false")
        end = self.end_probability
        if end is not None and (isinstance(end, bool) or not isinstance(end, int | float) or not 0 < end < 1):
            problems.append(f"endProbability: {end!r}; must be a number in (0, 1), or absent for plain argmax")
        if problems:
            raise ConfigError("decoding: " + "; ".join(problems))

    @classmethod
    def from_options(cls, options: dict) -> "DecodingControls":
        """From serve/'s option names (`repetitionPenalty`, ...), as the pipeline file's `decoding:` spells them."""
        return cls(options.get("repetitionPenalty", 1.0), options.get("noRepeatNgramSize", 0), options.get("stopOnRepetition", False),
                   options.get("endProbability"))


@dataclass(frozen=True)
class Answer:
    tokens: list[int]  # generated ids, without the end token
    text: str  # cut before a repeated sentence
    finish_reason: str  # "stop" (an end token), "length" (max_new_tokens) or "repetition"


def normalised_sentence(text: str) -> str:
    """Lower-cased, punctuation (Unicode P*) removed, whitespace collapsed and trimmed."""
    kept = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P"))
    return WHITESPACE_RUN.sub(" ", kept).strip(" ")


def split_sentences(text: str) -> tuple[list[tuple[str, int]], tuple[str, int]]:
    """(complete sentences, the open one after them) as (normalised text, where a cut before it falls).

    The cut falls just after the end marks of the sentence before, so the whitespace between goes too.
    """
    complete, start, cut_before = [], 0, 0
    for end in SENTENCE_END.finditer(text):
        complete.append((normalised_sentence(text[start : end.start()]), cut_before))
        cut_before = end.start() + len(end.group(1) or "")
        start = end.end()
    return complete, (normalised_sentence(text[start:]), cut_before)


def repeated_sentence_cut(text: str, ended: bool) -> int | None:
    """Where `text` is cut before its first sentence that repeats an earlier one; None when none does.

    `ended`: the answer is over, so its last sentence counts as complete. A sentence that normalises to
    nothing (a lone "...") never counts.
    """
    complete, last = split_sentences(text)
    seen = set()
    for key, cut_before in complete + ([last] if ended else []):
        if not key:
            continue
        if key in seen:
            return cut_before
        seen.add(key)
    return None


def settled(text: str) -> str:
    """Decoded text without a trailing incomplete UTF-8 character (U+FFFD), as serve/answer-text.ts follows it."""
    return text.rstrip("\ufffd")


def serve_decoder(tokenizer):
    """ids -> the text serve/ makes of them: special tokens skipped, and, unless the tokenizer's config turns
    clean_up_tokenization_spaces off, " ." made "." and so on (transformers 5 no longer does this for BPE
    tokenizers, @huggingface/tokenizers still does), so both sides split the same sentences."""
    cleanup = tokenizer.init_kwargs.get("clean_up_tokenization_spaces") is not False

    def decode(ids: list[int]) -> str:
        text = tokenizer.decode(ids, skip_special_tokens=True) if ids else ""
        if cleanup:
            for before, after in CLEANUP:
                text = text.replace(before, after)
        return text

    return decode


def answer_only(processor, prompt_length: int):
    """A transformers LogitsProcessor that hands `processor` the generated tokens alone, never the prompt."""
    from transformers import LogitsProcessor

    class AnswerOnly(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return processor(input_ids[:, prompt_length:], scores)

    return AnswerOnly()


def end_rule(end_ids: list[int], end_probability: float):
    """A transformers LogitsProcessor: only the end tokens stay when they hold at least `end_probability` of
    the softmax, and only the others when they do not; greedy then picks as serve/'s `greedyWithEnd`."""
    import torch
    from transformers import LogitsProcessor

    class EndRule(LogitsProcessor):
        def __call__(self, input_ids, scores):
            ends = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
            ends[end_ids] = True
            probabilities = torch.softmax(scores.double(), dim=-1)
            ending = probabilities[:, ends].sum(dim=-1, keepdim=True) >= end_probability
            return scores.masked_fill(torch.where(ending, ~ends, ends), float("-inf"))

    return EndRule()


def repeated_sentence_stop(prompt_length: int, decode):
    """A transformers StoppingCriteria: a row is done once its answer's text holds a repeated sentence."""
    import torch
    from transformers import StoppingCriteria

    class RepeatedSentenceStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = [repeated_sentence_cut(settled(decode(row[prompt_length:].tolist())), ended=False) is not None for row in input_ids]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return RepeatedSentenceStop()


def greedy_answer(model, tokenizer, prompt_ids: list[int], max_new_tokens: int, eos_ids: list[int], pad_id: int,
                  controls: DecodingControls = DecodingControls()) -> Answer:
    """One prompt, greedy `generate()` with the controls: what serve/'s `generate([prompt], options)` returns."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor
    from transformers import StoppingCriteriaList

    decode = serve_decoder(tokenizer)
    prompt_length = len(prompt_ids)
    processors, criteria = [], []
    if controls.repetition_penalty != 1:
        processors.append(answer_only(RepetitionPenaltyLogitsProcessor(float(controls.repetition_penalty)), prompt_length))
    if controls.no_repeat_ngram_size > 0:
        processors.append(answer_only(NoRepeatNGramLogitsProcessor(controls.no_repeat_ngram_size), prompt_length))
    if controls.end_probability is not None:
        processors.append(end_rule(eos_ids, controls.end_probability))
    if controls.stop_on_repetition:
        criteria.append(repeated_sentence_stop(prompt_length, decode))
    # A fresh config, as in export.torch_greedy: nothing from the model's own generation_config.json.
    settings = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=eos_ids, pad_token_id=pad_id)
    prompt = torch.tensor([prompt_ids])
    with torch.no_grad():
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=settings,
                                logits_processor=LogitsProcessorList(processors), stopping_criteria=StoppingCriteriaList(criteria))
    generated = output[0, prompt_length:].tolist()
    end = next((n for n, token in enumerate(generated) if token in eos_ids), None)
    tokens = generated if end is None else generated[:end]
    text, reason = decode(tokens), ("length" if end is None else "stop")
    if controls.stop_on_repetition:
        # Stopped on a repeat (its last token completed it), or the end of the answer completed one.
        cut = repeated_sentence_cut(settled(text), ended=False) if end is None else None
        cut = repeated_sentence_cut(text, ended=True) if cut is None else cut
        if cut is not None:
            text, reason = text[:cut], "repetition"
    return Answer(tokens, text, reason)
