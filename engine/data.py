"""Read the train/validation splits and plan the order of batches.

Splits are Arrow IPC files written by the TypeScript data stage (arrow-js writes the IPC *file*
format; the stream format is read too). Only `question` and `answer` are used. Every problem with
both files is collected and reported together as a data error.

Batches are length-grouped: a seeded shuffle, then sequences of similar length batched together,
so each batch pads only to its own longest sequence instead of to maxLength.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.events import DataError

REQUIRED_COLUMNS = ("question", "answer")
# HF's LengthGroupedSampler uses the same idea: sort within chunks of 50 batches, so batches are
# similar in length yet the data order stays random.
BATCHES_PER_LENGTH_GROUP = 50


@dataclass
class QaRows:
    questions: list[str]
    answers: list[str]

    def __len__(self) -> int:
        return len(self.questions)

    def take(self, indices) -> "QaRows":
        return QaRows([self.questions[i] for i in indices], [self.answers[i] for i in indices])


def seed_entropy(seed: int) -> int:
    """numpy wants a non-negative seed; the spec allows any integer."""
    return seed % 2**64


def read_arrow_table(path: Path) -> pa.Table:
    with open(path, "rb") as source:
        try:
            return pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_stream(source).read_all()


def read_split(path: str, field: str, problems: list[str]) -> QaRows | None:
    """Read one split, appending any problem (as `field (path): what`) instead of raising."""
    where = f"{field} ({path})"
    if not Path(path).is_file():
        problems.append(f"{where}: file does not exist")
        return None
    try:
        table = read_arrow_table(Path(path))
    except (pa.ArrowException, OSError) as error:
        problems.append(f"{where}: not an Arrow IPC file or stream ({error})")
        return None
    missing = [name for name in REQUIRED_COLUMNS if name not in table.column_names]
    if missing:
        problems.append(f"{where}: missing column(s) {', '.join(missing)}; it has {', '.join(table.column_names) or 'none'}")
        return None
    if table.num_rows == 0:
        problems.append(f"{where}: has no rows")
        return None
    rows = QaRows(
        [str(v) if v is not None else None for v in table.column("question").to_pylist()],
        [str(v) if v is not None else None for v in table.column("answer").to_pylist()],
    )
    for column in REQUIRED_COLUMNS:
        empty = [i for i, v in enumerate(getattr(rows, column + "s")) if v is None or not v.strip()]
        if empty:
            shown = ", ".join(map(str, empty[:5])) + (" ..." if len(empty) > 5 else "")
            problems.append(f"{where}: {len(empty)} row(s) with an empty {column} (row numbers {shown})")
    return rows


def seeded_subset(rows: QaRows, limit: int | None, seed: int, stream: int) -> QaRows:
    """At most `limit` rows, a seeded draw kept in file order; `stream` keeps the splits' draws apart."""
    if limit is None or limit >= len(rows):
        return rows
    chosen = np.random.default_rng([seed_entropy(seed), stream]).choice(len(rows), size=limit, replace=False)
    return rows.take(sorted(chosen.tolist()))


def read_splits(spec: dict) -> tuple[QaRows, QaRows]:
    """The training and validation rows, capped at maxTrainRows and maxValidationRows."""
    problems: list[str] = []
    train = read_split(spec["data"]["train"], "data.train", problems)
    validation = read_split(spec["data"]["validation"], "data.validation", problems)
    if problems:
        raise DataError(f"the training data has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))
    training = spec["training"]
    return (
        seeded_subset(train, training.get("maxTrainRows"), training["seed"], stream=0),
        seeded_subset(validation, training.get("maxValidationRows"), training["seed"], stream=1),
    )


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's batches of row indices: seeded, each batch of similar lengths, longest first within."""
    rng = np.random.default_rng([seed_entropy(seed), epoch])
    permutation = rng.permutation(len(lengths)).tolist()
    group_size = batch_size * BATCHES_PER_LENGTH_GROUP
    batches = []
    for start in range(0, len(permutation), group_size):
        group = sorted(permutation[start : start + group_size], key=lambda i: -lengths[i])  # stable: ties keep shuffle order
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    return [batches[i] for i in rng.permutation(len(batches)).tolist()]


def evaluation_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Validation batches: sorted by length, so padding is minimal; order does not matter."""
    ordered = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
