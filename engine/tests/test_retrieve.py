"""`python -m engine retrieve`: the nearest training question's answer, the same seeded draw of
training rows as `train`, every question answered once, user errors listed and exit 3."""

import json

from engine.data import read_splits
from engine.retrieve import RetrievalIndex, shingles

from .conftest import assert_engine_event, assert_matches_schema, qa_rows, run_engine, write_arrow, write_lines


def question_lines(rows: list[dict]) -> list[dict]:
    return [{"id": r["id"], "question": r["question"], "reference": r["answer"], "fact": r["fact"], "category": r["category"]} for r in rows]


def test_nearest_is_the_most_similar_question_and_ties_go_to_the_earlier_row():
    index = RetrievalIndex(["How long is the warranty?", "How do I reset the router?", "How do I reset the router?"])
    row, similarity = index.nearest("how do i RESET the   router")
    assert row == 1 and similarity == len(shingles("how do i reset the router")) / len(shingles("how do i reset the router?"))
    assert index.nearest("warranty length?")[0] == 0
    assert index.nearest("§§") == (0, 0.0)  # nothing in common: the first row, similarity 0


def test_answers_every_question_from_the_rows_training_used(tmp_path):
    train_rows = qa_rows(40)
    write_arrow(tmp_path / "train.arrow", train_rows)
    write_arrow(tmp_path / "validation.arrow", qa_rows(4, offset=40))
    # Questions asked verbatim from the training split: only rows in the draw can be found exactly.
    questions = question_lines(train_rows[:12])
    questions_path = write_lines(tmp_path / "questions.jsonl", questions)
    code, events, stderr = run_engine(
        "retrieve", "--train", tmp_path / "train.arrow", "--questions", questions_path,
        "--output", tmp_path / "out.jsonl", "--max-train-rows", 10, "--seed", 3,
    )
    assert code == 0, stderr
    for event in events:
        assert_engine_event(event)
    assert events[-1]["metrics"]["rows"] == 12 and events[-1]["metrics"]["indexRows"] == 10
    assert_matches_schema(events[-1]["metrics"], "retrieval-metrics")

    spec = {"data": {"train": str(tmp_path / "train.arrow"), "validation": str(tmp_path / "validation.arrow")},
            "training": {"seed": 3, "maxTrainRows": 10}}
    drawn, _ = read_splits(spec)
    output = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["id"] for row in output] == [q["id"] for q in questions]
    for row, question in zip(output, questions):
        assert_matches_schema(row, "prediction")
        assert row["system"] == "retrieval" and row["reference"] == question["reference"]
        assert row["retrievedQuestion"] in drawn.questions
        assert row["prediction"] == drawn.answers[drawn.questions.index(row["retrievedQuestion"])]
        in_draw = question["question"] in drawn.questions
        assert (row["similarity"] == 1.0) == in_draw
        if in_draw:
            assert row["prediction"] == question["reference"]


def test_malformed_questions_are_listed_together_and_exit_3(tmp_path):
    write_arrow(tmp_path / "train.arrow", qa_rows(5))
    good = question_lines(qa_rows(1))[0]
    path = write_lines(tmp_path / "q.jsonl", [good, "{not json", {**good, "id": 7}, good])
    code, events, _ = run_engine("retrieve", "--train", tmp_path / "train.arrow", "--questions", path, "--output", tmp_path / "o.jsonl")
    message = events[-1]["message"]
    assert code == 3 and events[-1]["kind"] == "data"
    assert "line 2: not valid JSON" in message and "line 3: field `id`" in message and "line 4: id 'row-0' appears twice" in message
    assert not (tmp_path / "o.jsonl").exists()


def test_missing_split_and_bad_limit_are_user_errors(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", question_lines(qa_rows(1)))
    code, events, _ = run_engine("retrieve", "--train", tmp_path / "nope.arrow", "--questions", path, "--output", tmp_path / "o.jsonl")
    assert code == 3 and "--train" in events[-1]["message"] and "does not exist" in events[-1]["message"]
    write_arrow(tmp_path / "train.arrow", qa_rows(5))
    code, events, _ = run_engine(
        "retrieve", "--train", tmp_path / "train.arrow", "--questions", path, "--output", tmp_path / "o.jsonl", "--max-train-rows", 0
    )
    assert code == 2 and "--max-train-rows 0" in events[-1]["message"]
