"""A run killed (SIGKILL), stopped (SIGTERM) or paused (stopAtStep) and resumed ends with the same
weights as a straight run."""

import json
import os
import shutil
import signal
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from engine import checkpoints
from engine.events import ConfigError

from .conftest import PROJECT_ROOT, assert_engine_event, assert_matches_schema, engine_command, read_json, read_until, train_in_process, write_spec


def resume_spec(base, splits, output_dir) -> dict:
    # 24 rows, batches of 3, two micro-batches per step: 4 steps per epoch, so the 10 steps cross
    # two epoch boundaries; warmup, cosine decay and LoRA dropout exercise scheduler and RNG state.
    training = {"maxSteps": 10, "batchSize": 3, "gradientAccumulation": 2, "maxLength": 64, "learningRate": 2e-3,
                "warmupRatio": 0.2, "evalEvery": 3, "checkpointEvery": 4, "device": "cpu"}
    return {"model": {"base": str(base)}, "training": training, "data": dict(splits), "outputDir": str(output_dir)}


@pytest.fixture(scope="module")
def straight_run(tiny_llama_dir, splits, tmp_path_factory):
    return train_in_process(resume_spec(tiny_llama_dir, splits, tmp_path_factory.mktemp("straight") / "out"))


def start_engine(*args, stderr_path):
    return subprocess.Popen(engine_command("train", *args), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=open(stderr_path, "w"), text=True)


def test_killed_and_stopped_runs_resume_to_the_straight_runs_weights(straight_run, tiny_llama_dir, splits, tmp_path):
    spec_path = write_spec(tmp_path / "spec.json", resume_spec(tiny_llama_dir, splits, tmp_path / "run"))

    # 1. SIGKILL as soon as the first checkpoint exists: no chance to clean up.
    first = start_engine("--spec", spec_path, stderr_path=tmp_path / "first.log")
    events = read_until(first, lambda e: e["event"] == "checkpoint")
    first.kill()
    first.wait()
    assert events[-1]["event"] == "checkpoint" and events[-1]["step"] == 4
    checkpoint = events[-1]["path"]

    # 2. Resume, then SIGTERM after step 6 (an evaluation is due there): checkpoint, exit 130.
    second = start_engine("--spec", spec_path, "--resume-from", checkpoint, stderr_path=tmp_path / "second.log")
    events = read_until(second, lambda e: e["event"] == "step" and e["step"] == 6)
    assert events[0]["event"] == "start" and events[0]["step"] == 4 and events[0]["resumedFrom"] == checkpoint
    second.send_signal(signal.SIGTERM)
    events += read_until(second, lambda e: False)
    assert second.wait() == 130, (tmp_path / "second.log").read_text()
    assert events[-1]["event"] == "checkpoint" and events[-1]["step"] >= 6
    checkpoint = events[-1]["path"]

    # 3. Resume to the end (in this process: the subprocess contract is covered above).
    events = []
    result = train_in_process({**resume_spec(tiny_llama_dir, splits, tmp_path / "run"), "resumeFrom": checkpoint}, events)
    done = events[-1]
    assert done["event"] == "done" and done["step"] == 10 == straight_run.metrics["steps"]

    resumed_final = result.final_dir
    straight = load_file(straight_run.final_dir / "adapter_model.safetensors")
    resumed = load_file(resumed_final / "adapter_model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6)

    def curve(final):
        history = json.loads((final / "history.json").read_text())
        return [(s["step"], round(s["loss"], 5), s["learningRate"]) for s in history["steps"]], history["evals"]

    steps, evals = curve(resumed_final)
    straight_steps, straight_evals = curve(straight_run.final_dir)
    assert steps == straight_steps
    assert [e["step"] for e in evals] == [e["step"] for e in straight_evals] == [0, 3, 6, 9, 10]
    assert [e["validationLoss"] for e in evals] == pytest.approx([e["validationLoss"] for e in straight_evals], abs=1e-5)
    assert done["metrics"]["finalValidationLoss"] == pytest.approx(straight_run.metrics["finalValidationLoss"], abs=1e-5)


def test_stop_when_an_evaluation_is_due_defers_it_to_the_resumed_run(straight_run, tiny_llama_dir, splits, tmp_path):
    from engine.events import Interrupted, StopRequest

    spec = resume_spec(tiny_llama_dir, splits, tmp_path / "run")
    events = []

    def emit(event):
        events.append(event)
        if event["event"] == "step" and event["step"] == 3:  # evalEvery is 3
            os.kill(os.getpid(), signal.SIGTERM)

    with StopRequest() as stop, pytest.raises(Interrupted) as interrupted:
        train_in_process(spec, emit=emit, stop=stop)
    checkpoint = interrupted.value.checkpoint
    assert checkpoint.endswith("step-3") and [e["step"] for e in events if e["event"] == "eval"] == [0]
    assert json.loads((tmp_path / "run" / "checkpoints" / "step-3" / "state.json").read_text())["evalPending"]

    events = []
    result = train_in_process({**spec, "resumeFrom": checkpoint}, events)
    assert [(e["event"], e["step"]) for e in events[:2]] == [("start", 3), ("eval", 3)]
    straight = load_file(straight_run.final_dir / "adapter_model.safetensors")
    resumed = load_file(result.final_dir / "adapter_model.safetensors")
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("architecture", ["t5", "bart"])
def test_a_killed_encoder_decoder_run_resumes_to_the_straight_runs_weights(architecture, request, splits, tmp_path):
    # The same run as above on a tiny T5 or BART (their own dropout and LoRA's draw from the RNG): the
    # seq2seq batches, loss and data order come back exactly after a SIGKILL at the first checkpoint.
    base = request.getfixturevalue(f"tiny_{architecture}_dir")
    straight_run = train_in_process(resume_spec(base, splits, tmp_path / "straight"))
    spec_path = write_spec(tmp_path / "spec.json", resume_spec(base, splits, tmp_path / "run"))
    killed = start_engine("--spec", spec_path, stderr_path=tmp_path / "killed.log")
    events = read_until(killed, lambda e: e["event"] == "checkpoint")
    killed.kill()
    killed.wait()
    assert events[-1]["event"] == "checkpoint" and events[-1]["step"] == 4, (tmp_path / "killed.log").read_text()

    result = train_in_process({**resume_spec(base, splits, tmp_path / "run"), "resumeFrom": events[-1]["path"]})
    assert result.metrics["steps"] == 10
    assert_ends_as_the_straight_run(result, straight_run)


# The pause: stopAtStep inside the budget, then a continuation from the pause's checkpoint.


def assert_train_outputs_match_the_schemas(result, events) -> None:
    for event in events:
        assert_engine_event(event)
    assert events[-1]["event"] == "done" and events[-1]["metrics"] == result.metrics
    assert_matches_schema(result.metrics, "train-metrics")
    assert_matches_schema(read_json(result.final_dir / "metrics.json"), "train-metrics")
    assert_matches_schema(read_json(result.final_dir / "history.json"), "training-history")


def assert_ends_as_the_straight_run(result, straight_run) -> None:
    """The same adapter weights, step losses and regular evaluations as the uninterrupted run."""
    straight = load_file(straight_run.final_dir / "adapter_model.safetensors")
    resumed = load_file(result.final_dir / "adapter_model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6)
    assert step_curve(result.final_dir) == step_curve(straight_run.final_dir)
    evals, straight_evals = regular_evals(result.final_dir), regular_evals(straight_run.final_dir)
    assert [step for step, _ in evals] == [step for step, _ in straight_evals] == [0, 3, 6, 9, 10]
    assert [loss for _, loss in evals] == pytest.approx([loss for _, loss in straight_evals], abs=1e-5)


def regular_evals(final_dir) -> list[tuple[int, float]]:
    return [(e["step"], e["validationLoss"]) for e in read_json(final_dir / "history.json")["evals"] if not e.get("rung")]


def step_curve(final_dir) -> list[tuple]:
    return [(s["step"], round(s["loss"], 5), s["learningRate"]) for s in read_json(final_dir / "history.json")["steps"]]


def checkpoint_names(output_dir) -> list[str]:
    return sorted(p.name for p in checkpoints.checkpoints_dir(output_dir).iterdir())


@pytest.fixture(scope="module")
def paused_run(tiny_llama_dir, splits, tmp_path_factory):
    """The straight run's budget paused at step 5, where neither an evaluation nor a checkpoint is due; one checkpoint kept."""
    spec = resume_spec(tiny_llama_dir, splits, tmp_path_factory.mktemp("paused") / "out")
    spec["training"]["keepCheckpoints"] = 1
    events = []
    result = train_in_process({**spec, "stopAtStep": 5}, events)
    return result, events, spec


def test_pause_checkpoints_and_measures_a_rung_that_never_picks_best(paused_run, straight_run):
    result, events, _ = paused_run
    output_dir = result.final_dir.parent
    assert_train_outputs_match_the_schemas(result, events)
    assert events[0]["event"] == "start" and (events[0]["stopAtStep"], events[0]["totalSteps"]) == (5, 10)
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4, 5]
    assert [(e["step"], e["rung"]) for e in events if e["event"] == "eval"] == [(0, False), (3, False), (5, True)]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [4, 5]
    metrics = result.metrics
    assert (metrics["pausedAtStep"], metrics["steps"], metrics["totalSteps"], metrics["stoppedEarly"]) == (5, 5, 10, 0)

    # The same five steps as the straight run: the schedule spans the whole budget, not the pause.
    assert step_curve(result.final_dir) == step_curve(straight_run.final_dir)[:5]
    history = read_json(result.final_dir / "history.json")
    rung = history["evals"][-1]
    assert rung["step"] == 5 and rung["rung"] is True and metrics["lastValidationLoss"] == rung["validationLoss"]

    # keepCheckpoints 1: the pause's checkpoint alone, complete, with the rung in its history for the continuation.
    assert checkpoint_names(output_dir) == ["best", "step-5"]
    step_5 = checkpoints.step_folder(output_dir, 5)
    assert checkpoints.is_complete(step_5)
    state = read_json(step_5 / "state.json")
    assert state["step"] == 5 and state["history"]["evals"] == history["evals"]
    # best/ and the early-stopping state belong to the straight timeline: the rung touched neither.
    regular = [e for e in history["evals"] if not e.get("rung")]
    regular_best = min(regular, key=lambda e: e["validationLoss"])
    assert read_json(output_dir / "checkpoints" / "best" / "best.json")["step"] == regular_best["step"] == state["bestStep"] == 3
    assert state["bestValidationLoss"] == regular_best["validationLoss"]

    # The rung is the lowest loss seen, so final/ holds the weights of step 5 (those of the checkpoint).
    assert rung["validationLoss"] < regular_best["validationLoss"]
    assert (metrics["bestStep"], metrics["finalValidationLoss"]) == (5, rung["validationLoss"])
    saved = load_file(step_5 / checkpoints.WEIGHTS_FILE)
    in_final = checkpoints.trainable_weights(result.model)
    assert saved.keys() == in_final.keys() and all(torch.equal(saved[name], in_final[name]) for name in saved)


def test_continuing_from_the_pause_ends_as_the_straight_run(paused_run, straight_run, tmp_path):
    result, _, spec = paused_run
    output_dir = tmp_path / "out"  # a copy: the paused run's folder stays as the test above checks it
    shutil.copytree(result.final_dir.parent, output_dir)
    checkpoint = str(checkpoints.step_folder(output_dir, 5))
    continued_spec = resume_spec(spec["model"]["base"], spec["data"], output_dir)  # keepCheckpoints back to its default, 2
    events = []
    continued = train_in_process({**continued_spec, "resumeFrom": checkpoint}, events)
    assert_train_outputs_match_the_schemas(continued, events)
    assert (events[0]["step"], events[0]["stopAtStep"], events[0]["resumedFrom"]) == (5, None, checkpoint)
    assert continued.metrics["pausedAtStep"] is None and continued.metrics["steps"] == 10

    assert_ends_as_the_straight_run(continued, straight_run)
    assert continued.metrics["bestStep"] == straight_run.metrics["bestStep"]
    assert continued.metrics["finalValidationLoss"] == pytest.approx(straight_run.metrics["finalValidationLoss"], abs=1e-5)
    # The rung stays in the history, marked, between the regular evaluations.
    steps_and_rungs = [(e["step"], e.get("rung", False)) for e in read_json(continued.final_dir / "history.json")["evals"]]
    assert steps_and_rungs == [(0, False), (3, False), (5, True), (6, False), (9, False), (10, False)]

    # Checkpoints stay after training: the newest keepCheckpoints (2 by default), as in the straight run.
    assert checkpoint_names(output_dir) == ["best", "step-5", "step-8"]
    assert checkpoint_names(straight_run.final_dir.parent) == ["best", "step-4", "step-8"]


def test_pause_where_an_evaluation_and_a_checkpoint_are_due_adds_neither(straight_run, tiny_llama_dir, splits, tmp_path):
    spec = resume_spec(tiny_llama_dir, splits, tmp_path / "out")
    spec["training"]["checkpointEvery"] = 3  # with evalEvery 3: step 6 is due both
    events = []
    result = train_in_process({**spec, "stopAtStep": 6}, events)
    assert_train_outputs_match_the_schemas(result, events)
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [3, 6]
    assert [(e["step"], e["rung"]) for e in events if e["event"] == "eval"] == [(0, False), (3, False), (6, False)]
    history = read_json(result.final_dir / "history.json")
    assert not any("rung" in e for e in history["evals"])
    straight_evals = regular_evals(straight_run.final_dir)[:3]
    assert [step for step, _ in regular_evals(result.final_dir)] == [step for step, _ in straight_evals]
    assert [loss for _, loss in regular_evals(result.final_dir)] == pytest.approx([loss for _, loss in straight_evals], abs=1e-5)
    assert result.metrics["pausedAtStep"] == 6
    assert read_json(tmp_path / "out" / "checkpoints" / "best" / "best.json")["step"] == result.metrics["bestStep"]


def test_a_pause_before_the_checkpoints_step_is_a_config_error(paused_run, tmp_path):
    result, _, spec = paused_run
    with pytest.raises(ConfigError, match="stopAtStep: 3 is before step 5 of the checkpoint"):
        train_in_process({**spec, "outputDir": str(tmp_path / "out"), "stopAtStep": 3,
                          "resumeFrom": str(checkpoints.step_folder(result.final_dir.parent, 5))})
