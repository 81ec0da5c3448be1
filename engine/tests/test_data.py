"""Arrow splits are read (file and stream format), problems collected, batches length-grouped."""

import json

import pytest

from engine.data import evaluation_batches, length_grouped_batches, read_split, read_splits
from engine.events import DataError

from .conftest import qa_rows, write_arrow


def test_reads_file_and_stream_format(tmp_path):
    rows = qa_rows(5)
    problems = []
    from_file = read_split(str(write_arrow(tmp_path / "a.arrow", rows)), "data.train", problems)
    from_stream = read_split(str(write_arrow(tmp_path / "b.arrows", rows, stream=True)), "data.train", problems)
    assert problems == []
    assert from_file.questions == from_stream.questions == [r["question"] for r in rows]
    assert from_file.answers == [r["answer"] for r in rows]


def test_all_problems_of_both_splits_are_reported_together(tmp_path):
    no_answer = write_arrow(tmp_path / "no-answer.arrow", qa_rows(3), drop=("answer",))
    spec = {"data": {"train": str(tmp_path / "missing.arrow"), "validation": str(no_answer)}, "training": {"seed": 1}}
    with pytest.raises(DataError) as raised:
        read_splits(spec)
    message = str(raised.value)
    assert "data.train" in message and "does not exist" in message
    assert "data.validation" in message and "missing column(s) answer" in message


def test_zero_rows_and_empty_answers_are_data_errors(tmp_path):
    rows = qa_rows(3)
    rows[1]["answer"] = "  "
    spec = {
        "data": {"train": str(write_arrow(tmp_path / "t.arrow", rows)), "validation": str(write_arrow(tmp_path / "v.arrow", []))},
        "training": {"seed": 1},
    }
    with pytest.raises(DataError, match=r"(?s)1 row\(s\) with an empty answer \(row numbers 1\).*has no rows"):
        read_splits(spec)


def test_max_train_and_validation_rows_are_seeded_draws(tmp_path):
    spec = {
        "data": {"train": str(write_arrow(tmp_path / "t.arrow", qa_rows(20))), "validation": str(write_arrow(tmp_path / "v.arrow", qa_rows(9)))},
        "training": {"seed": 3, "maxTrainRows": 5, "maxValidationRows": 4},
    }
    train, validation = read_splits(spec)
    again, _ = read_splits(spec)
    assert len(train) == 5 and len(validation) == 4 and train.questions == again.questions
    spec["training"]["seed"] = 4
    assert read_splits(spec)[0].questions != train.questions
    del spec["training"]["maxTrainRows"], spec["training"]["maxValidationRows"]
    assert [len(split) for split in read_splits(spec)] == [20, 9]


def test_length_grouped_batches_cover_every_row_once_with_similar_lengths():
    lengths = [(i * 37) % 100 + 1 for i in range(200)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert batches == length_grouped_batches(lengths, batch_size=8, seed=0, epoch=0)
    assert batches != length_grouped_batches(lengths, batch_size=8, seed=0, epoch=1)
    # Padding to each batch's longest wastes far less than padding to the longest overall.
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded < 1.1 * sum(lengths) < 0.6 * 100 * len(lengths)


def test_evaluation_batches_are_sorted_by_length():
    batches = evaluation_batches([3, 9, 1, 7], batch_size=2)
    assert batches == [[1, 3], [0, 2]]


def write_contexts(path, rows, pairs_of=lambda row: [{"id": "k1", "question": f"About {row['product']}?", "answer": "Known."}]):
    path.write_text("".join(json.dumps({"id": row["id"], "context": pairs_of(row)}) + "\n" for row in rows))
    return str(path)


def test_known_pairs_join_their_rows_by_id_and_follow_the_seeded_draw(tmp_path):
    train, validation = qa_rows(20), qa_rows(6, offset=20)
    spec = {
        "data": {
            "train": str(write_arrow(tmp_path / "t.arrow", train)),
            "validation": str(write_arrow(tmp_path / "v.arrow", validation)),
            "contexts": write_contexts(tmp_path / "contexts.jsonl", train + validation),
        },
        "training": {"seed": 3, "maxTrainRows": 5},
    }
    train_rows, validation_rows = read_splits(spec)
    assert len(train_rows) == 5 and len(train_rows.contexts) == 5
    by_id = {row["id"]: row for row in train}
    for row_id, context in zip(train_rows.ids, train_rows.contexts):
        assert context == [{"question": f"About {by_id[row_id]['product']}?", "answer": "Known."}]
    assert validation_rows.context(0) == [{"question": f"About {validation[0]['product']}?", "answer": "Known."}]


def test_rows_the_contexts_file_does_not_know_are_a_data_error(tmp_path):
    train = qa_rows(4)
    spec = {
        "data": {
            "train": str(write_arrow(tmp_path / "t.arrow", train)),
            "validation": str(write_arrow(tmp_path / "v.arrow", qa_rows(2, offset=4))),
            "contexts": write_contexts(tmp_path / "contexts.jsonl", train),
        },
        "training": {"seed": 1},
    }
    with pytest.raises(DataError, match=r"data.validation: 2 row\(s\) have no entry in data.contexts \(ids row-4, row-5\)"):
        read_splits(spec)
