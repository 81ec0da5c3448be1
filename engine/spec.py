"""Read a TrainSpec, check it against the JSON Schema emitted from `schemas/train-spec.ts`, fill defaults.

The schema is the one source of truth: its `default` keys are applied here, so the engine never
keeps a second copy of the defaults, and every rule the config has lives in the zod definition
(none is re-checked here). Every problem is collected and reported at once.
"""

import copy
import json
from pathlib import Path

import jsonschema

from engine.events import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRAIN_SPEC_SCHEMA = PROJECT_ROOT / "schemas" / "json" / "train-spec.schema.json"

# Fields a resumed run must share with the run that wrote the checkpoint, or the continuation
# would not be the same training run. The budget and its schedule define the run; where a process
# stops (stopAtStep) and how many checkpoints it keeps may differ between a pause and its continuation.
RESUME_INVARIANT_FIELDS = (
    "model",
    "data",
    "training.strategy",
    "training.lora",
    "training.maxSteps",
    "training.epochs",
    "training.learningRate",
    "training.schedule",
    "training.warmupRatio",
    "training.weightDecay",
    "training.batchSize",
    "training.gradientAccumulation",
    "training.maxLength",
    "training.seed",
    "training.maxTrainRows",
    "training.maxValidationRows",
)


def load_train_schema() -> dict:
    return json.loads(TRAIN_SPEC_SCHEMA.read_text())


def field_path(parts) -> str:
    return ".".join(str(part) for part in parts) or "(top level)"


def schema_problems(spec, schema: dict) -> list[str]:
    """All schema violations, one line each: `field.path: what is wrong (what the field is)`."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(spec), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        line = f"{field_path(error.absolute_path)}: {error.message}"
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        if description and error.validator not in ("required", "additionalProperties"):
            line += f" ({description})"
        problems.append(line)
    return problems


def apply_defaults(schema: dict, value):
    """Fill absent object properties from the schema's `default` keys, recursively (in place)."""
    if isinstance(value, dict):
        for name, property_schema in schema.get("properties", {}).items():
            if name not in value and "default" in property_schema:
                value[name] = copy.deepcopy(property_schema["default"])
            if name in value:
                apply_defaults(property_schema, value[name])
    return value


def validate_spec(spec, schema: dict | None = None) -> dict:
    """Return the spec with defaults applied, or raise ConfigError listing every problem."""
    schema = schema or load_train_schema()
    problems = schema_problems(spec, schema)
    if problems:
        raise ConfigError(f"the train spec has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))
    return apply_defaults(schema, copy.deepcopy(spec))


def load_spec(path: str, resume_from: str | None = None) -> dict:
    """Read and validate SPEC.json; `--resume-from` overrides `resumeFrom`."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"spec file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"spec file {path} is not readable JSON: {error}") from None
    spec = validate_spec(raw)
    if resume_from is not None:
        spec["resumeFrom"] = resume_from
    return spec


def get_field(spec: dict, dotted: str):
    value = spec
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def without_paths(spec: dict) -> dict:
    """The spec less where its files are (`model.base`, `data`), for specs whose `sources` say what they are."""
    stripped = {key: value for key, value in spec.items() if key != "data"}
    stripped["model"] = {key: value for key, value in spec["model"].items() if key != "base"}
    return stripped


def resume_mismatches(spec: dict, checkpoint_spec: dict) -> list[str]:
    """The invariant fields that differ. With `sources` in both, files are compared by content, not by
    path: a checkpoint restored on another machine finds the same files in a different folder."""
    fields = RESUME_INVARIANT_FIELDS
    if spec.get("sources") and checkpoint_spec.get("sources"):
        spec, checkpoint_spec = without_paths(spec), without_paths(checkpoint_spec)
        fields = (*fields, "sources")
    return [
        f"{name}: checkpoint has {json.dumps(get_field(checkpoint_spec, name))}, spec has {json.dumps(get_field(spec, name))}"
        for name in fields
        if get_field(spec, name) != get_field(checkpoint_spec, name)
    ]
