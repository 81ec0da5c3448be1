"""Batches of encoded examples, and the loss on their answer tokens.

The loss is cross-entropy summed over answer (and end-of-turn) tokens only; callers divide by the
token count, so gradient accumulation and validation weigh every answer token the same.

An encoder-decoder (seq2seq) batch has the prompts as encoder input and the answers as the decoder's
labels, two sequences padded apart; `decoder_input_ids` in a batch marks it.
"""

import functools
import inspect

import torch
import torch.nn.functional as F

from engine.data import QaRows
from engine.events import DataError, log
from engine.prompts import IGNORE_INDEX, EncodedExample, PromptEncoder


def encode_rows(encoder: PromptEncoder, rows: QaRows, max_length: int, field_name: str) -> list[EncodedExample]:
    encoded = [encoder.encode(q, a, max_length, rows.context(i)) for i, (q, a) in enumerate(zip(rows.questions, rows.answers))]
    kept = [e for e in encoded if e is not None]
    dropped = len(encoded) - len(kept)
    truncated = sum(e.truncated for e in kept)
    if dropped:
        log(f"warning: {field_name}: {dropped} of {len(encoded)} rows dropped: the prompt alone fills maxLength={max_length}")
    if truncated:
        log(f"note: {field_name}: {truncated} of {len(kept)} answers truncated to fit maxLength={max_length}")
    if rows.contexts is not None:
        given = sum(len(c) for c in rows.contexts)
        kept_pairs = sum(e.contextPairs for e in kept)
        if kept_pairs < given:
            log(f"note: {field_name}: {given - kept_pairs} of {given} known pairs left out of prompts to fit maxLength={max_length}")
    if not kept:
        raise DataError(f"{field_name}: every row's prompt is longer than training.maxLength={max_length}; raise maxLength")
    return kept


def example_length(example: EncodedExample) -> int:
    """Tokens the model reads for an example: seq2seq counts the encoder's and the decoder's."""
    return len(example.input_ids) + (len(example.labels) if example.encoder_decoder else 0)


def collate(examples: list[EncodedExample], pad_id: int, device: torch.device, decoder_start_id: int | None = None) -> dict:
    """Right-pad to the longest sequence of this batch (not to maxLength).

    seq2seq (`decoder_start_id` is models.decoder_start_token_id): see collate_seq2seq.
    """
    if examples[0].encoder_decoder:
        return collate_seq2seq(examples, pad_id, device, decoder_start_id)
    longest = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return {name: tensor.to(device) for name, tensor in batch.items()}


def collate_seq2seq(examples: list[EncodedExample], pad_id: int, device: torch.device, decoder_start_id: int) -> dict:
    """Encoder ids right-padded with their attention mask; labels right-padded with IGNORE_INDEX; the
    decoder's inputs are the labels shifted right behind decoder_start_id, pad where a label is ignored
    (as transformers' shift_tokens_right). The decoder needs no mask: it is causal and the padding is
    after every real token."""
    assert decoder_start_id is not None, "a seq2seq batch needs the decoder's start token"
    longest = max(len(e.input_ids) for e in examples)
    longest_target = max(len(e.labels) for e in examples)
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
    labels = torch.full((len(examples), longest_target), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        input_ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
        attention_mask[row, : len(example.input_ids)] = 1
        labels[row, : len(example.labels)] = torch.tensor(example.labels)
    decoder_input_ids = torch.full_like(labels, decoder_start_id)
    decoder_input_ids[:, 1:] = labels[:, :-1]
    decoder_input_ids[decoder_input_ids == IGNORE_INDEX] = pad_id
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids, "labels": labels}
    return {name: tensor.to(device) for name, tensor in batch.items()}


def batch_tokens(batch: dict) -> int:
    """Non-padding tokens the model read: the prompts and answers (seq2seq: encoder and decoder tokens)."""
    tokens = int(batch["attention_mask"].sum())
    return tokens + label_count(batch) if "decoder_input_ids" in batch else tokens


def summed_loss(model, batch: dict, autocast) -> torch.Tensor:
    """Cross-entropy summed over answer tokens (labels shifted: position t predicts token t+1).

    The output layer (vocabulary-sized: a fifth of SmolLM2's compute) runs only from the first
    position that predicts an answer token in this batch, via transformers' `logits_to_keep`.
    A seq2seq batch has no shift: see summed_seq2seq_loss.
    """
    if "decoder_input_ids" in batch:
        return summed_seq2seq_loss(model, batch, autocast)
    labels = batch["labels"]
    length = labels.size(1)
    answer_columns = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    start = max(int(answer_columns[0]) - 1, 0) if len(answer_columns) and accepts_logits_to_keep(model) else 0
    keep = {"logits_to_keep": length - start} if start else {}
    with autocast():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **keep).logits
    # logits are for positions start .. length-1
    predicting = logits[:, :-1].float()
    targets = labels[:, start + 1 :]
    return F.cross_entropy(
        predicting.reshape(-1, predicting.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def summed_seq2seq_loss(model, batch: dict, autocast) -> torch.Tensor:
    """Cross-entropy summed over the decoder's labels, unshifted: decoder position t predicts label t."""
    with autocast():
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"]
        ).logits
    logits = logits.float()
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), batch["labels"].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return forward_accepts(type(base), "logits_to_keep")


@functools.cache
def forward_accepts(model_class, argument: str) -> bool:
    return argument in inspect.signature(model_class.forward).parameters


def label_count(batch: dict) -> int:
    """Tokens the loss is taken on: decoder-only drops the first column (no position predicts it)."""
    if "decoder_input_ids" in batch:
        return int((batch["labels"] != IGNORE_INDEX).sum())
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


@torch.no_grad()
def validation_sums(model, batches: list[dict], autocast) -> tuple[float, int]:
    """Summed cross-entropy and answer-token count over these batches (a process's share of the split)."""
    model.eval()
    total = sum(float(summed_loss(model, batch, autocast)) for batch in batches)
    count = sum(label_count(batch) for batch in batches)
    model.train()
    return total, count


def validation_loss(model, batches: list[dict], autocast) -> float:
    """Mean cross-entropy per answer token over the whole validation split."""
    total, count = validation_sums(model, batches, autocast)
    return total / count


