"""The spec is checked against the JSON Schema emitted from schemas/train-spec.ts, defaults come from it."""

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
    assert spec["training"]["lora"]["rank"] == 16 and spec["training"]["lora"]["targetModules"] == ["all-linear"]
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


def test_empty_target_modules_or_layers_are_schema_problems():
    # The zod definition says it (minItems 1); the engine has no check of its own.
    with pytest.raises(ConfigError) as raised:
        validate_spec({**MINIMAL, "training": {"lora": {"targetModules": [], "layers": []}}})
    message = str(raised.value)
    assert "2 problem(s)" in message
    assert "training.lora.targetModules: [] should be non-empty" in message
    assert "training.lora.layers: [] should be non-empty" in message


def test_all_linear_beside_other_targets_is_a_schema_problem():
    # peft would quietly adapt only the named modules; the emitted schema carries the zod rule.
    with pytest.raises(ConfigError) as raised:
        validate_spec({**MINIMAL, "training": {"lora": {"targetModules": ["all-linear", "q_proj"]}}})
    assert "training.lora.targetModules" in str(raised.value)
    assert validate_spec({**MINIMAL, "training": {"lora": {"targetModules": ["all-linear"]}}})


def test_resume_mismatches_name_the_budget_and_schedule_not_the_pause():
    spec = validate_spec(json.loads(json.dumps({**MINIMAL, "training": {"maxSteps": 10}})))
    other = json.loads(json.dumps(spec))
    for name, value in (("batchSize", 2), ("maxSteps", 99), ("learningRate", 5e-4), ("schedule", "linear"),
                        ("warmupRatio", 0.5), ("weightDecay", 0.1), ("epochs", 3)):
        other["training"][name] = value
    other["training"]["keepCheckpoints"] = 5  # where a run stops and what it keeps may differ
    other["stopAtStep"] = 4
    assert sorted(m.split(":")[0] for m in resume_mismatches(spec, other)) == [
        "training.batchSize", "training.epochs", "training.learningRate", "training.maxSteps",
        "training.schedule", "training.warmupRatio", "training.weightDecay",
    ]


def test_resume_compares_files_by_their_sources_not_their_paths():
    sources = {"model": "a" * 64, "train": "b" * 64, "validation": "c" * 64}
    spec = validate_spec(json.loads(json.dumps({**MINIMAL, "sources": sources})))
    elsewhere = json.loads(json.dumps(spec))
    elsewhere["model"]["base"] = "/another/machine/cache/model.dir"
    elsewhere["data"] = {"train": "/another/machine/train.arrow", "validation": "/another/machine/validation.arrow"}
    assert resume_mismatches(spec, elsewhere) == []
    elsewhere["sources"]["train"] = "d" * 64
    elsewhere["model"]["systemPrompt"] = "another prompt"
    assert sorted(m.split(":")[0] for m in resume_mismatches(spec, elsewhere)) == ["model", "sources"]
    # Without sources on both sides, the paths are what identifies the files.
    del elsewhere["sources"]
    assert sorted(m.split(":")[0] for m in resume_mismatches(spec, elsewhere)) == ["data", "model"]
