"""Two processes under torchrun (gloo, CPU) train exactly as one: the same per-step losses within
1e-5 relative, for LoRA and for full fine-tuning; a two-process run killed with its whole process
group resumes to the straight two-process run's losses."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import PROJECT_ROOT, read_until, train_in_process, write_spec

TOLERANCE = 1e-5  # relative; measured: about 1e-7 (the shares are summed in another order)


def ddp_spec(base, splits, output_dir, **training) -> dict:
    # 24 rows in batches of 3 split over 2 processes: shares of 2 and 1 rows, two micro-batches per step.
    settings = {"maxSteps": 6, "batchSize": 3, "gradientAccumulation": 2, "maxLength": 64, "learningRate": 1e-3,
                "warmupRatio": 0, "evalEvery": 3, "checkpointEvery": 2, "device": "cpu", **training}
    return {"model": {"base": str(base)}, "training": settings, "data": dict(splits), "outputDir": str(output_dir)}


def torchrun(spec_path: Path, *args, processes=2) -> subprocess.Popen:
    """`python -m torch.distributed.run ... -m engine train` as the activity starts it, in a process group of its own."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "engine", "train", "--spec", str(spec_path), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores
    log = open(spec_path.with_suffix(".log"), "a")
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True)


def run_two_processes(spec: dict, path: Path, *args) -> list[dict]:
    process = torchrun(write_spec(path, spec), *args)
    events = read_until(process, lambda e: False)
    assert process.wait(timeout=300) == 0, path.with_suffix(".log").read_text()[-3000:]
    return events


def step_losses(events) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events if e["event"] == "step"}


def largest_relative_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(abs(a[step] - b[step]) / abs(a[step]) for step in a)


@pytest.mark.parametrize(
    "training",
    [
        pytest.param({"lora": {"dropout": 0}}, id="lora"),
        # Batches of one row: the second process's share is always empty, and it must still take part.
        pytest.param({"strategy": "full", "batchSize": 1, "gradientAccumulation": 3, "learningRate": 1e-4}, id="full"),
    ],
)
def test_two_processes_train_as_one(training, tiny_llama_dir, splits, tmp_path):
    # No dropout: two processes draw their dropout masks in other shapes than one, so only the
    # distribution would match, not the numbers.
    one_events = []
    train_in_process(ddp_spec(tiny_llama_dir, splits, tmp_path / "one", **training), one_events)
    two_events = run_two_processes(ddp_spec(tiny_llama_dir, splits, tmp_path / "two", **training), tmp_path / "two.json")

    difference = largest_relative_difference(step_losses(one_events), step_losses(two_events))
    print(f"largest relative difference of the step losses, 1 vs 2 processes: {difference:.2e}")
    assert difference <= TOLERANCE
    # Rank 0 alone speaks: one start and one done, which says two processes trained.
    assert [e["event"] for e in two_events].count("start") == 1
    one_done, two_done = one_events[-1], two_events[-1]
    assert two_done["metrics"]["processes"] == 2 and one_done["metrics"]["processes"] == 1
    assert two_done["metrics"]["trainTokens"] == one_done["metrics"]["trainTokens"]
    assert abs(two_done["metrics"]["finalValidationLoss"] / one_done["metrics"]["finalValidationLoss"] - 1) <= TOLERANCE
    assert (tmp_path / "two" / "final" / "metrics.json").is_file()


def engine_processes(spec_path: Path) -> list[int]:
    """Processes whose command line names this spec (torchrun and its engines)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(spec_path).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return found


def test_a_killed_two_process_run_resumes_to_the_straight_run(tiny_llama_dir, splits, tmp_path):
    # LoRA dropout on: each process draws its own masks, and each must resume with its own RNG states.
    spec = ddp_spec(tiny_llama_dir, splits, tmp_path / "straight", lora={"dropout": 0.1})
    straight = run_two_processes(spec, tmp_path / "straight.json")

    killed_path = write_spec(tmp_path / "killed.json", {**spec, "outputDir": str(tmp_path / "killed")})
    first = torchrun(killed_path)
    events = read_until(first, lambda e: e["event"] == "checkpoint")
    os.killpg(first.pid, signal.SIGKILL)  # torchrun's group; its engines live in sessions of their own
    first.wait()
    checkpoint = events[-1]["path"]
    assert events[-1]["step"] == 2
    # Left alone, the engines would go on to the end of the budget and write final/ within seconds.
    deadline = time.monotonic() + 5
    while engine_processes(killed_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine_processes(killed_path) == [], "engine processes outlived torchrun"
    assert not (tmp_path / "killed" / "final").exists(), "engine processes went on training after torchrun was killed"

    resumed = run_two_processes(json.loads(killed_path.read_text()), killed_path, "--resume-from", checkpoint)
    assert resumed[0]["event"] == "start" and resumed[0]["step"] == 2
    straight_losses, resumed_losses = step_losses(straight), step_losses(resumed)
    difference = largest_relative_difference({s: straight_losses[s] for s in resumed_losses}, resumed_losses)
    print(f"largest relative difference of the step losses, resumed vs straight: {difference:.2e}")
    assert difference <= TOLERANCE
    final = [straight[-1]["metrics"]["finalValidationLoss"], resumed[-1]["metrics"]["finalValidationLoss"]]
    assert abs(final[1] / final[0] - 1) <= TOLERANCE
