"""The spec is checked against the JSON Schema emitted from schemas/engine.ts, defaults come from it."""

import json

import pytest

from engine.events import ConfigError
from engine.spec import load_train_schema, resume_mismatches, validate_spec

MINIMAL = {"model": {}, "training": {}, "data": {"train": "t.arrow", "validation": "v.arrow"}, "outputDir": "out"}


def test_defaults_come_from_the_schema():
    spec = validate_spec(json.loads(json.dumps(MINIMAL)))
    training = load_train_schema()["properties"]["training"]["properties"]
    assert spec["model"]["base"] == "default"
    for name in ("strategy", "learningRate", "schedule", "warmupRatio", "epochs", "batchSize", "maxLength", "seed", "device"):
        assert spec["training"][name] == training[name]["default"]
    assert spec["training"]["lora"]["rank"] == 16 and spec["training"]["lora"]["targetModules"][0] == "q_proj"
    assert "maxSteps" not in spec["training"] and "resumeFrom" not in spec


def test_partial_lora_section_gets_the_other_lora_defaults():
    spec = validate_spec({**MINIMAL, "training": {"lora": {"rank": 4}}})
    assert spec["training"]["lora"] == {**spec["training"]["lora"], "rank": 4, "alpha": 32, "dropout": 0.05}


def test_every_problem_is_reported_with_its_field():
    bad = {
        "model": {"base": 7},
        "training": {"batchSize": 0, "lora": {"rank": 0}, "schedule": "exponential", "learnignRate": 1},
        "data": {"train": "t.arrow"},
        "outputDir": "out",
    }
    with pytest.raises(ConfigError) as raised:
        validate_spec(bad)
    message = str(raised.value)
    for field in ("model.base", "training.batchSize", "training.lora.rank", "training.schedule", "learnignRate", "data: 'validation'"):
        assert field in message, field
    assert "6 problem(s)" in message


def test_all_linear_must_stand_alone():
    with pytest.raises(ConfigError, match="training.lora.targetModules: `all-linear` must be the only entry"):
        validate_spec({**MINIMAL, "training": {"lora": {"targetModules": ["all-linear", "q_proj"]}}})


def test_resume_mismatches_name_the_fields():
    spec = validate_spec(json.loads(json.dumps(MINIMAL)))
    other = json.loads(json.dumps(spec))
    other["training"]["batchSize"] = 2
    other["training"]["maxSteps"] = 99  # may change on resume
    assert [m.split(":")[0] for m in resume_mismatches(spec, other)] == ["training.batchSize"]
