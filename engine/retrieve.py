"""The retrieval baseline: answer each question with the training answer of the most similar
training question. Fine-tuning has to beat this to be worth its cost.

Similarity is the Jaccard index of character 3-gram sets of the lower-cased, whitespace-collapsed
questions, found exactly through an inverted index (shingle -> training rows), so every candidate
that shares a shingle is scored. Ties go to the earlier training row.
"""

import json
from collections import Counter
from pathlib import Path

from engine.data import read_split, seeded_subset
from engine.events import ConfigError, DataError, Emit, log
from engine.score import check_report_path, read_json_lines, write_text_atomically

SHINGLE_SIZE = 3
QUESTION_FIELDS = ("id", "question", "reference")


def shingles(text: str) -> frozenset[str]:
    normalized = " ".join(text.lower().split())
    return frozenset(normalized[i : i + SHINGLE_SIZE] for i in range(max(1, len(normalized) - SHINGLE_SIZE + 1)))


class RetrievalIndex:
    def __init__(self, questions: list[str]):
        self.sizes = []
        self.postings: dict[str, list[int]] = {}
        for row, question in enumerate(questions):
            grams = shingles(question)
            self.sizes.append(len(grams))
            for gram in grams:
                self.postings.setdefault(gram, []).append(row)

    def nearest(self, question: str) -> tuple[int, float]:
        """(training row, Jaccard similarity) of the most similar question; (0, 0.0) when none shares a shingle."""
        grams = shingles(question)
        shared = Counter()
        for gram in grams:
            shared.update(self.postings.get(gram, ()))
        best, best_similarity = 0, 0.0
        for row, count in shared.items():
            similarity = count / (len(grams) + self.sizes[row] - count)
            if similarity > best_similarity or (similarity == best_similarity and row < best):
                best, best_similarity = row, similarity
        return best, best_similarity


def retrieve(train_path: str, questions_path: str, output_path: str, max_train_rows: int | None, seed: int, emit: Emit) -> list[dict]:
    """Write the retrieval baseline's predictions for every question; `done` event; returns the rows written."""
    if max_train_rows is not None and max_train_rows < 1:
        raise ConfigError(f"--max-train-rows {max_train_rows}: must be at least 1 (leave it out to index every training row)")
    output = check_report_path(output_path, example="retrieval.jsonl")
    problems: list[str] = []
    train = read_split(train_path, "--train", problems)
    if problems:
        raise DataError("; ".join(problems))
    questions = read_json_lines(questions_path, "--questions", QUESTION_FIELDS, key=("id",))
    indexed = seeded_subset(train, max_train_rows, seed, stream=0)
    index = RetrievalIndex(indexed.questions)
    rows = []
    for record in questions:
        row, similarity = index.nearest(record["question"])
        rows.append({
            **record,
            "system": "retrieval",
            "prediction": indexed.answers[row],
            "retrievedQuestion": indexed.questions[row],
            "similarity": round(similarity, 4),
        })
    write_text_atomically(output, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    mean = sum(row["similarity"] for row in rows) / len(rows)
    log(f"retrieval baseline: {len(rows)} questions answered from {len(indexed)} training rows (mean similarity {mean:.3f})")
    metrics = {"rows": len(rows), "indexRows": len(indexed), "similarityMean": round(mean, 4)}
    emit({"event": "done", "step": 0, "outputDir": str(output.parent), "metrics": metrics})
    return rows
