"""How a question and answer become tokens, and which tokens the loss is computed on.

Three formats, recorded in `prompt_format.json` next to every trained artifact so inference builds
the very same prompt (and `schemas/engine.ts` PromptFormat is its contract):
- `chat_template`: the base model's own chat template (SmolLM2: `<|im_start|>user ...<|im_end|>`),
  with the optional system prompt. Loss on the answer and the end-of-turn token, so the model
  learns to stop.
- `plain`, for base models without a chat template (GPT-2 family): question, a separator special
  token added to the tokenizer, answer, eos. Loss on the answer and eos.
- `seq2seq`, for encoder-decoder models (T5, BART): the encoder reads the prompt text with the
  tokenizer's own special tokens (T5 `... </s>`, BART `<s> ... </s>`); the decoder's target is the
  answer and eos, all of it in the loss. No chat template, no added token.

Grounding: a question may come with known Q&A pairs (the most similar training rows, retrieved in
Node). They are rendered into the question's text by the `grounding` templates, which the format
records, so the Node generator (serve/grounding.ts) renders the very same text at inference.
"""

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.events import ConfigError

PROMPT_FORMAT_FILE = "prompt_format.json"
SEPARATOR_TOKEN = "<|answer|>"
IGNORE_INDEX = -100  # label value cross-entropy skips
PROBE_ANSWER = "PROBE-ANSWER-7f3a"


@dataclass
class Grounding:
    """How known Q&A pairs are put into a question: `{pairs}` and `{question}` in `template`,
    `{question}` and `{answer}` in `pairTemplate`. Filled in one pass, so braces in the text stay."""

    template: str = "Answers to similar questions from our support records:\n\n{pairs}\n\nCustomer question: {question}"
    pairTemplate: str = "Q: {question}\nA: {answer}"
    pairSeparator: str = "\n\n"


PLACEHOLDER = re.compile(r"\{(question|answer|pairs)\}")


def fill(template: str, **values: str) -> str:
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def grounded_question(question: str, context: list[dict] | None, grounding: "Grounding | None") -> str:
    """The question's text with its known pairs (`{"question", "answer"}` each); the question alone without them."""
    if not context or grounding is None:
        return question
    pairs = grounding.pairSeparator.join(fill(grounding.pairTemplate, question=p["question"], answer=p["answer"]) for p in context)
    return fill(grounding.template, pairs=pairs, question=question)


@dataclass
class PromptFormat:
    kind: str  # "chat_template", "plain" or "seq2seq"
    systemPrompt: str | None = None
    separator: str | None = None  # plain: the special token between question and answer
    endOfTurn: str | None = None  # text that closes an answer; generation stops at it
    grounding: Grounding | None = field(default_factory=Grounding)

    def save(self, folder: Path) -> None:
        (Path(folder) / PROMPT_FORMAT_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "PromptFormat":
        saved = json.loads((Path(folder) / PROMPT_FORMAT_FILE).read_text())
        grounding = saved.pop("grounding", None)
        return cls(**saved, grounding=Grounding(**grounding) if grounding else None)


@dataclass
class EncodedExample:
    input_ids: list[int]  # seq2seq: the encoder's ids alone
    labels: list[int]  # IGNORE_INDEX where no loss is taken; seq2seq: the decoder's target, every token in the loss
    truncated: bool
    contextPairs: int = 0  # known pairs in the prompt, after dropping what did not fit
    encoder_decoder: bool = False  # seq2seq: input_ids and labels are two sequences, batched apart


def chat_messages(system_prompt: str | None, question: str, answer: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


class PromptEncoder:
    """Binds a prompt format to a tokenizer; `prepare_tokenizer` picks the format for a base model."""

    def __init__(self, prompt_format: PromptFormat, tokenizer):
        self.format = prompt_format
        self.tokenizer = tokenizer
        if prompt_format.kind == "chat_template":
            self.reply_suffix = self.render_reply("probe question", PROBE_ANSWER)[len(PROBE_ANSWER) :]
        # seq2seq: the eos id itself, whatever text a tokenizer would make of the token's name.
        self.end_ids = [tokenizer.eos_token_id] if prompt_format.kind == "seq2seq" else self.encode_text(prompt_format.endOfTurn)

    @classmethod
    def prepare_tokenizer(cls, tokenizer, system_prompt: str | None, encoder_decoder: bool = False) -> "PromptEncoder":
        """Choose the format: `seq2seq` for an encoder-decoder model (models.is_encoder_decoder), else the
        chat template or `plain`; for `plain`, add the separator token (the caller adds its row: models.add_token_rows)."""
        if tokenizer.eos_token is None:
            raise ConfigError("model.base: the tokenizer has no eos token, so the model could not learn to stop")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token  # padding is masked out; any id will do
        if encoder_decoder:
            return cls(PromptFormat("seq2seq", system_prompt, endOfTurn=tokenizer.eos_token), tokenizer)
        if tokenizer.chat_template:
            probe = cls(PromptFormat("chat_template", system_prompt, endOfTurn=""), tokenizer)
            end_of_turn = end_of_turn_text(probe.reply_suffix, tokenizer)
            return cls(PromptFormat("chat_template", system_prompt, endOfTurn=end_of_turn), tokenizer)
        if SEPARATOR_TOKEN not in tokenizer.get_vocab():
            from tokenizers import AddedToken

            tokenizer.add_tokens([AddedToken(SEPARATOR_TOKEN, special=True, normalized=False)], special_tokens=True)
        return cls(PromptFormat("plain", system_prompt, SEPARATOR_TOKEN, tokenizer.eos_token), tokenizer)

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def render_prompt(self, question: str, context: list[dict] | None = None) -> str:
        question = grounded_question(question, context, self.format.grounding)
        if self.format.kind == "chat_template":
            messages = chat_messages(self.format.systemPrompt, question)
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        system = f"{self.format.systemPrompt}\n\n" if self.format.systemPrompt else ""
        return f"{system}{question}{self.format.separator or ''}"  # seq2seq: no separator

    def render_reply(self, question: str, answer: str) -> str:
        """The text the template puts after the generation prompt: the answer and its closing."""
        prompt = self.render_prompt(question)
        full = self.tokenizer.apply_chat_template(chat_messages(self.format.systemPrompt, question, answer), tokenize=False)
        if not full.startswith(prompt):
            raise ConfigError("model.base: its chat template does not continue the generation prompt with the answer")
        return full[len(prompt) :]

    def prompt_ids(self, question: str, context: list[dict] | None = None) -> list[int]:
        """Tokens of the prompt alone, exactly as inference must feed them to the model.

        seq2seq: the encoder's ids, with the tokenizer's special tokens (T5 appends `</s>`, BART wraps in `<s> ... </s>`).
        """
        text = self.render_prompt(question, context)
        if self.format.kind == "seq2seq":
            return self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return self.encode_text(text)

    def answer_ids(self, question: str, answer: str) -> list[int]:
        """Tokens of the answer before the end-of-turn token."""
        if self.format.kind in ("plain", "seq2seq"):
            return self.encode_text(answer)
        reply = self.render_reply(question, answer)
        if not reply.endswith(self.reply_suffix):
            raise ConfigError("model.base: its chat template closes answers in different ways; cannot mask the loss")
        return self.encode_text(reply[: len(reply) - len(self.reply_suffix)])

    def encode(self, question: str, answer: str, max_length: int, context: list[dict] | None = None) -> EncodedExample | None:
        """Prompt + answer + end of turn, at most max_length tokens; None if the prompt leaves no room.

        Known pairs are dropped from the last while the whole answer does not fit (a grounded prompt
        never pushes the answer out); then truncation cuts the answer, keeps the prompt and the
        end-of-turn token. seq2seq: the same budget over encoder and decoder tokens together; the
        example's input_ids are the prompt alone and its labels the answer and eos.
        """
        content = self.answer_ids(question, answer)
        pairs = list(context or [])
        prompt = self.prompt_ids(question, pairs)
        while pairs and len(prompt) + len(content) + len(self.end_ids) > max_length:
            pairs.pop()
            prompt = self.prompt_ids(question, pairs)
        room = max_length - len(prompt) - len(self.end_ids)
        if room < 1:
            return None
        truncated = len(content) > room
        content = content[:room]
        if self.format.kind == "seq2seq":
            return EncodedExample(prompt, content + self.end_ids, truncated, len(pairs), encoder_decoder=True)
        return EncodedExample(
            input_ids=prompt + content + self.end_ids,
            labels=[IGNORE_INDEX] * len(prompt) + content + self.end_ids,
            truncated=truncated,
            contextPairs=len(pairs),
        )


def end_of_turn_text(reply_suffix: str, tokenizer) -> str:
    """The part of the template's answer closing that the model must learn to produce.

    Up to and including the first special token (`<|im_end|>` of `<|im_end|>\\n`); without one,
    the closing text minus trailing whitespace, or eos when the template closes with nothing.
    """
    special = set(tokenizer.all_special_tokens) | {
        token.content for token in tokenizer.added_tokens_decoder.values() if token.special
    }
    ids = tokenizer(reply_suffix, add_special_tokens=False)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    for position, token in enumerate(tokens):
        if token in special:
            return tokenizer.decode(ids[: position + 1])
    return reply_suffix.rstrip() or tokenizer.eos_token
