"""Read the train/validation splits and plan the order of batches.

Splits are Arrow IPC files written by the TypeScript data stage (arrow-js writes the IPC *file*
format; the stream format is read too). `question` and `answer` are used, and `id` joins a row to
its known pairs when the spec names a contexts file (grounding: JSON lines `{"id", "context":
[{"id", "question", "answer"}]}`, written by the grounding step in Node). Every problem with both
files is collected and reported together as a data error.

Batches are length-grouped: a seeded shuffle, then sequences of similar length batched together,
so each batch pads only to its own longest sequence instead of to maxLength.
"""

import json
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
    ids: list[str] | None = None
    contexts: list[list[dict]] | None = None  # known pairs per row (grounding); None without

    def __len__(self) -> int:
        return len(self.questions)

    def take(self, indices) -> "QaRows":
        pick = lambda values: None if values is None else [values[i] for i in indices]  # noqa: E731
        return QaRows(pick(self.questions), pick(self.answers), pick(self.ids), pick(self.contexts))

    def context(self, index: int) -> list[dict] | None:
        return self.contexts[index] if self.contexts is not None else None


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
        [str(v) for v in table.column("id").to_pylist()] if "id" in table.column_names else None,
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


def read_contexts(path: str, problems: list[str]) -> dict[str, list[dict]]:
    """Known pairs by row id, from the grounding step's JSON lines."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"data.contexts ({path}): cannot read the file ({error})")
        return {}
    contexts = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            contexts[str(record["id"])] = [{"question": str(p["question"]), "answer": str(p["answer"])} for p in record["context"]]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            problems.append(f"data.contexts ({path}) line {number}: not a {{id, context: [{{question, answer}}]}} record ({error})")
    return contexts


def attach_contexts(rows: QaRows | None, contexts: dict[str, list[dict]], field: str, problems: list[str]) -> None:
    """Every row gets its known pairs (possibly none); a row the contexts file does not know is a problem."""
    if rows is None:
        return
    if rows.ids is None:
        problems.append(f"{field}: has no id column, so its rows cannot be joined to data.contexts")
        return
    missing = [row_id for row_id in rows.ids if row_id not in contexts]
    if missing:
        problems.append(f"{field}: {len(missing)} row(s) have no entry in data.contexts (ids {', '.join(missing[:5])})")
        return
    rows.contexts = [contexts[row_id] for row_id in rows.ids]


def read_splits(spec: dict) -> tuple[QaRows, QaRows]:
    """The training and validation rows (with their known pairs when grounded), capped at maxTrainRows and maxValidationRows."""
    problems: list[str] = []
    train = read_split(spec["data"]["train"], "data.train", problems)
    validation = read_split(spec["data"]["validation"], "data.validation", problems)
    if spec["data"].get("contexts") and not problems:
        contexts = read_contexts(spec["data"]["contexts"], problems)
        attach_contexts(train, contexts, "data.train", problems)
        attach_contexts(validation, contexts, "data.validation", problems)
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
