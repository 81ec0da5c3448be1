"""`python -m engine`: help text, and user errors as one error event with the documented exit code.

These runs stop before torch is imported, so they take about a second each.
"""

import subprocess

from .conftest import PROJECT_ROOT, assert_engine_event, engine_command, qa_rows, run_engine, write_arrow, write_spec


def test_help_of_every_subcommand():
    helps = {}
    for args in ([], ["train"], ["export"], ["export-embedder"], ["score"], ["perplexity"], ["model-info"]):
        result = subprocess.run(engine_command(*args, "--help"), cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "usage: python -m engine" in result.stdout
        helps[" ".join(args)] = result.stdout
    for command in ("train", "export", "export-embedder", "score", "perplexity", "model-info"):
        assert command in helps[""]
    for command in ("train", "model-info"):
        assert "events:" in helps[command] and "exit:" in helps[command] and "writes:" in helps[command]
    assert "--resume-from" in helps["train"] and "--spec" in helps["train"]
    assert "stopAtStep" in helps["train"] and "keepCheckpoints" in helps["train"]
    assert "--model" in helps["model-info"]
    assert "--system-prompt" in helps["export"] and "--output" in helps["export-embedder"]


def test_bad_spec_exits_2_and_lists_every_problem(tmp_path):
    spec = {
        "model": {"base": "default", "temperature": 0.7},
        "training": {"strategy": "qlora", "learningRate": -1, "lora": {"dropout": 2}},
        "data": {"train": "t.arrow", "validation": "v.arrow"},
    }
    code, events, stderr = run_engine("train", "--spec", write_spec(tmp_path / "spec.json", spec))
    assert code == 2
    assert len(events) == 1 and events[0]["event"] == "error" and events[0]["kind"] == "config"
    assert_engine_event(events[0])
    message = events[0]["message"]
    for field in ("(top level): 'outputDir' is a required property", "model: Additional properties", "training.strategy",
                  "training.learningRate", "training.lora.dropout"):
        assert field in message, field
    assert "Traceback" not in stderr


def test_spec_that_is_not_json_exits_2(tmp_path):
    (tmp_path / "spec.json").write_text("{not json")
    code, events, _ = run_engine("train", "--spec", tmp_path / "spec.json")
    assert code == 2 and events[0]["kind"] == "config" and "not readable JSON" in events[0]["message"]


def test_data_error_exits_3(tmp_path):
    no_question = write_arrow(tmp_path / "v.arrow", qa_rows(2), drop=("question",))
    spec = {"model": {}, "training": {}, "data": {"train": str(tmp_path / "absent.arrow"), "validation": str(no_question)},
            "outputDir": str(tmp_path / "out")}
    code, events, stderr = run_engine("train", "--spec", write_spec(tmp_path / "spec.json", spec))
    assert code == 3
    assert [e["kind"] for e in events] == ["data"]
    assert "absent.arrow): file does not exist" in events[0]["message"]
    assert "missing column(s) question" in events[0]["message"]
    assert "Traceback" not in stderr


def test_unexpected_exceptions_are_crash_events_and_interrupts_exit_130(monkeypatch):
    from engine import cli
    from engine.events import Interrupted

    events = []
    monkeypatch.setattr(cli, "events_to_real_stdout", lambda: events.append)

    def crash(args, emit):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "train_command", crash)
    assert cli.main(["train", "--spec", "spec.json"]) == 1
    assert events == [{"event": "error", "kind": "crash", "message": "RuntimeError: disk on fire"}]

    def interrupted(args, emit):
        raise Interrupted("out/checkpoints/step-3")

    monkeypatch.setattr(cli, "train_command", interrupted)
    assert cli.main(["train", "--spec", "spec.json"]) == 130
    assert len(events) == 1  # no error event for an interruption: the checkpoint event said it all
