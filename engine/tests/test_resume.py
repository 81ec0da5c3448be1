"""A run killed (SIGKILL) or stopped (SIGTERM) and resumed ends with the same weights as a straight run."""

import json
import os
import signal
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from .conftest import PROJECT_ROOT, assert_engine_event, engine_command, train_in_process, write_spec


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


def read_until(process, stop) -> list[dict]:
    """Events of a running engine until stop(event) is true (then stop reading) or it exits."""
    events = []
    for line in process.stdout:
        events.append(json.loads(line))
        assert_engine_event(events[-1])
        if stop(events[-1]):
            break
    return events


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
