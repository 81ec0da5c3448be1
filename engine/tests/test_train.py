"""Training on tiny random models: what trains, what stays frozen, what is written."""

import json

import jsonschema
import pytest
import torch
from safetensors.torch import load_file

from engine.models import load_finetuned
from engine.spec import load_train_schema

from .conftest import assert_engine_event, assert_matches_schema, read_json, train_in_process
from .conftest import tiny_spec as conftest_tiny_spec

# Loss of the first optimizer step of the seeded tiny LoRA run below. A change means the model
# init, data order, prompt format or loss mask changed: check that it was meant, then update.
PINNED_FIRST_LOSS = 10.80198


def tiny_spec(base, output_dir, splits, **training) -> dict:
    """The module's runs: 8 steps, evaluation every 4, a checkpoint every 2 (the pinned loss uses these)."""
    return conftest_tiny_spec(base, output_dir, splits, **{"maxSteps": 8, "evalEvery": 4, "checkpointEvery": 2, **training})


@pytest.fixture(scope="module")
def lora_run(tiny_llama_dir, splits, tmp_path_factory):
    events = []
    spec = tiny_spec(tiny_llama_dir, tmp_path_factory.mktemp("lora") / "out", splits)
    result = train_in_process(spec, events)
    return result, events


def test_lora_trains_adapters_and_freezes_base_weights(lora_run, tiny_llama_dir):
    result, _ = lora_run
    model = result.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # initialised at zero, so they moved
    original = load_file(tiny_llama_dir / "model.safetensors")
    base = {n: p for n, p in model.get_base_model().named_parameters() if "lora_" not in n}
    for name, tensor in original.items():
        peft_name = name.replace(".weight", ".base_layer.weight") if any(
            t in name for t in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        ) else name
        assert torch.equal(base[peft_name].detach(), tensor), name


def test_first_loss_is_pinned(lora_run):
    _, events = lora_run
    first = next(e for e in events if e["event"] == "step")
    assert first["loss"] == pytest.approx(PINNED_FIRST_LOSS, abs=2e-4)


def test_events_have_the_documented_shapes_and_order(lora_run):
    _, events = lora_run
    for event in events:
        assert_engine_event(event)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[0]["stopAtStep"] is None and events[0]["totalSteps"] == 8
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 9))
    assert [(e["step"], e["rung"]) for e in events if e["event"] == "eval"] == [(0, False), (4, False), (8, False)]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4, 6]
    metrics = events[-1]["metrics"]
    assert_matches_schema(metrics, "train-metrics")
    assert metrics["initialValidationLoss"] > metrics["finalValidationLoss"] > 0
    assert metrics["steps"] == 8 and metrics["trainTokens"] > 0 and metrics["tokensPerSecond"] > 0
    assert metrics["pausedAtStep"] is None and metrics["stoppedEarly"] == 0


def test_artifact_is_self_contained(lora_run):
    result, _ = lora_run
    final = result.final_dir
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "chat_template.jinja",
                 "prompt_format.json", "train_config.json", "history.json", "training_curve.png", "metrics.json"):
        assert (final / name).is_file(), name
    jsonschema.validate(json.loads((final / "train_config.json").read_text()), load_train_schema())
    history = json.loads((final / "history.json").read_text())
    assert_matches_schema(history, "training-history")
    assert len(history["steps"]) == 8 and [e["step"] for e in history["evals"]] == [0, 4, 8]
    assert json.loads((final / "metrics.json").read_text()) == result.metrics
    assert_matches_schema(read_json(final / "metrics.json"), "train-metrics")
    assert_matches_schema(read_json(final / "prompt_format.json"), "prompt-format")
    # Reloading the artifact gives the trained model's outputs.
    model, tokenizer, prompt_format = load_finetuned(final)
    assert prompt_format.kind == "chat_template" and prompt_format.endOfTurn == "<|im_end|>"
    ids = torch.tensor([tokenizer.encode("How do I reset my router?")])
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, result.model(ids).logits)


def test_checkpoints_keep_the_last_two_and_the_best(lora_run):
    result, _ = lora_run
    checkpoints = result.final_dir.parent / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best", "step-4", "step-6"]
    for folder in checkpoints.iterdir():
        assert (folder / "complete").is_file()
    state = json.loads((checkpoints / "step-6" / "state.json").read_text())
    # 24 rows in batches of 4: six steps end epoch 0; the next step starts epoch 1's order.
    assert (state["step"], state["epoch"], state["batchIndex"], len(state["batchOrder"])) == (6, 0, 6, 6)
    assert json.loads((checkpoints / "best" / "best.json").read_text())["step"] == 8


def test_full_fine_tuning_changes_base_weights(tiny_llama_dir, splits, tmp_path):
    result = train_in_process(tiny_spec(tiny_llama_dir, tmp_path / "out", splits, strategy="full", maxSteps=2, evalEvery=2))
    assert all(p.requires_grad for p in result.model.parameters())
    original = load_file(tiny_llama_dir / "model.safetensors")
    trained = load_file(result.final_dir / "model.safetensors")
    changed = [name for name in original if not torch.equal(original[name], trained[name])]
    assert len(changed) >= 0.9 * len(original), f"only {len(changed)} of {len(original)} tensors changed"


def test_training_drives_the_loss_down(tiny_gpt2_dir, splits, tmp_path):
    result = train_in_process(tiny_spec(tiny_gpt2_dir, tmp_path / "out", splits, strategy="full", maxSteps=24,
                                        batchSize=8, learningRate=3e-3, evalEvery=24, checkpointEvery=100))
    losses = [s["loss"] for s in json.loads((result.final_dir / "history.json").read_text())["steps"]]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1.0, losses
    assert result.metrics["finalValidationLoss"] < result.metrics["initialValidationLoss"] - 1.0


def test_plain_format_lora_trains_the_separator_embedding(tiny_gpt2_dir, splits, tmp_path):
    spec = tiny_spec(tiny_gpt2_dir, tmp_path / "out", splits, maxSteps=3, evalEvery=3, lora={"targetModules": ["all-linear"]})
    result = train_in_process(spec)
    assert json.loads((result.final_dir / "prompt_format.json").read_text())["kind"] == "plain"
    assert_matches_schema(read_json(result.final_dir / "prompt_format.json"), "prompt-format")
    model, tokenizer, _ = load_finetuned(result.final_dir)
    ids = torch.tensor([tokenizer.encode("Can I return the webcam?<|answer|>")])
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, result.model(ids).logits)


def test_early_stopping_keeps_the_best_weights(tiny_gpt2_dir, splits, tmp_path):
    # At this learning rate (half the schema's largest) and seed the second step makes the validation
    # loss worse; patience 1 stops there and the artifact keeps the best weights, those of step 1 (from
    # best/), not the last ones. (GPT-2's dropout draws from the seeded stream: a change in what draws
    # random numbers before training, as the separator row once did, changes which seed does this.)
    spec = tiny_spec(tiny_gpt2_dir, tmp_path / "out", splits, strategy="full", learningRate=0.05, maxSteps=6,
                     evalEvery=1, earlyStoppingPatience=1, seed=1)
    result = train_in_process(spec)
    assert_matches_schema(read_json(result.final_dir / "metrics.json"), "train-metrics")
    assert result.metrics["stoppedEarly"] == 1 and result.metrics["steps"] == 2 and result.metrics["bestStep"] == 1
    assert result.metrics["pausedAtStep"] is None
    assert result.metrics["initialValidationLoss"] > result.metrics["lastValidationLoss"] > result.metrics["finalValidationLoss"]
    name = "transformer.h.0.attn.c_attn.weight"
    original = load_file(tiny_gpt2_dir / "model.safetensors")[name]
    best = load_file(tmp_path / "out" / "checkpoints" / "best" / "weights.safetensors")[name]
    trained = load_file(result.final_dir / "model.safetensors")[name]
    assert torch.equal(best, trained) and not torch.equal(original, trained)


@pytest.mark.parametrize("strategy", ["lora", "full"])
def test_the_separator_row_starts_as_the_mean_of_the_embeddings(tiny_gpt2_dir, splits, tmp_path, strategy):
    # The same row the untuned baseline's export gets (engine/export.py load_for_export), not a random draw.
    from engine.spec import validate_spec
    from engine.strategies import build_model

    spec = validate_spec(tiny_spec(tiny_gpt2_dir, tmp_path / "out", splits, strategy=strategy, lora={"targetModules": ["all-linear"]}))
    model, tokenizer, encoder, _ = build_model(spec)
    original = load_file(tiny_gpt2_dir / "model.safetensors")["transformer.wte.weight"]
    separator = tokenizer.convert_tokens_to_ids(encoder.format.separator)
    assert separator == original.shape[0]
    ids = torch.tensor([[separator]])
    rows = model.get_input_embeddings()(ids)[0, 0]  # through peft's trainable-token layer for LoRA
    torch.testing.assert_close(rows, original.mean(dim=0))
