"""Benchmark the engine's default training recipe against the seed recipe.

Run:  .venv/bin/python bench/train_recipes.py DATA.arrow [--steps 8] [--validation VALIDATION.arrow]
      (DATA may also be a .jsonl file with `question` and `answer` fields.)

Same machine, model (the real default, SmolLM2-135M-Instruct), data and number of optimizer steps:
- engine: `python -m engine train` with the spec defaults (LoRA r16 on all attention and MLP
  projections, batch 8, maxLength 256, length-grouped batches, loss on answer tokens only).
- seed: transformers' Trainer with LoRA r=16 alpha=32 dropout 0.05 on peft's default modules,
  batch 8, every sequence padded to 256 tokens, loss on the whole sequence, Trainer defaults
  otherwise (learning rate 5e-5, linear schedule).
Each recipe runs in its own process, so peak memory (max RSS) is its own. Throughput counts
non-padding tokens per second of training (evaluation excluded) in both. Validation loss is the
engine's definition for both: mean cross-entropy per answer token (end-of-turn included).
Results: printed side by side and written to bench/results/train_recipes.json.
"""

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
RESULTS_FILE = PROJECT_ROOT / "bench" / "results" / "train_recipes.json"
MAX_LENGTH = 256
BATCH_SIZE = 8
SEED = 42


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [{"question": r["question"], "answer": r["answer"]} for r in rows]
    from engine.data import read_arrow_table

    table = read_arrow_table(path)
    return [{"question": q, "answer": a} for q, a in zip(table.column("question").to_pylist(), table.column("answer").to_pylist())]


def write_arrow(rows: list[dict], path: Path) -> str:
    import pyarrow as pa

    table = pa.Table.from_pylist(rows, schema=pa.schema([("question", pa.string()), ("answer", pa.string())]))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return str(path)


def prepare_splits(args, work: Path) -> tuple[str, str, int, int]:
    """Train and validation Arrow files: the given validation file, or a seeded hold-out."""
    rows = read_rows(Path(args.data))
    if args.validation:
        validation = read_rows(Path(args.validation))
    else:
        random.Random(SEED).shuffle(rows)
        validation, rows = rows[: args.validation_rows], rows[args.validation_rows :]
    return write_arrow(rows, work / "train.arrow"), write_arrow(validation, work / "validation.arrow"), len(rows), len(validation)


def run_measured(command: list[str], log_path: Path) -> tuple[int, str, float, float]:
    """Run a child; return (exit code, stdout, peak RSS in MiB, wall seconds) of that child alone."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        stdout = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # the rusage of this child only
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, stdout, usage.ru_maxrss / 1024, time.perf_counter() - started  # ru_maxrss is KiB


def tail(log_path: Path, lines: int = 30) -> str:
    return "\n".join(log_path.read_text().splitlines()[-lines:])


def engine_recipe(train: str, validation: str, steps: int, work: Path) -> dict:
    spec = {
        "model": {"base": "default"},
        "training": {"maxSteps": steps, "evalEvery": steps, "checkpointEvery": steps},
        "data": {"train": train, "validation": validation},
        "outputDir": str(work / "engine-run"),
    }
    (work / "engine-spec.json").write_text(json.dumps(spec))
    command = [sys.executable, "-m", "engine", "train", "--spec", str(work / "engine-spec.json")]
    code, stdout, peak_mib, wall = run_measured(command, work / "engine.log")
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if code != 0 or events[-1]["event"] != "done":
        sys.exit(f"engine recipe failed (exit {code}):\n{tail(work / 'engine.log')}")
    metrics = events[-1]["metrics"]
    return {
        "tokensPerSecond": metrics["tokensPerSecond"],
        "trainTokens": metrics["trainTokens"],
        "trainSeconds": metrics["trainSeconds"],
        "peakRssMiB": peak_mib,
        "wallSeconds": wall,
        "initialValidationLoss": metrics["initialValidationLoss"],
        "finalValidationLoss": metrics["lastValidationLoss"],  # the weights after `steps`, as for seed
        "trainableParameters": metrics["trainableParameters"],
    }


def seed_recipe(train: str, validation: str, steps: int, work: Path) -> dict:
    command = [sys.executable, __file__, "--seed-child", train, "--validation", validation, "--steps", str(steps), "--work", str(work)]
    code, stdout, peak_mib, wall = run_measured(command, work / "seed.log")
    if code != 0:
        sys.exit(f"seed recipe failed (exit {code}):\n{tail(work / 'seed.log')}")
    return {**json.loads(stdout.strip().splitlines()[-1]), "peakRssMiB": peak_mib, "wallSeconds": wall}


def seed_child(train: str, validation: str, steps: int, work: Path) -> None:
    """In the child process: the seed recipe, then the engine's validation loss of its weights."""
    import contextlib

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments, default_data_collator

    from engine.batches import collate, encode_rows, validation_loss
    from engine.data import evaluation_batches, read_split
    from engine.models import load_base_model
    from engine.prompts import PromptEncoder, chat_messages

    torch.manual_seed(SEED)
    model, tokenizer, _ = load_base_model("default")
    problems = []
    train_rows = read_split(train, "train", problems)
    validation_rows = read_split(validation, "validation", problems)
    assert not problems, problems
    texts = [tokenizer.apply_chat_template(chat_messages(None, q, a), tokenize=False) for q, a in zip(train_rows.questions, train_rows.answers)]
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, add_special_tokens=False)
    dataset = [
        {"input_ids": ids, "attention_mask": mask, "labels": [t if m else -100 for t, m in zip(ids, mask)]}
        for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])
    ]

    # The engine's validation loss, before and after, on the same encoded validation rows.
    encoder = PromptEncoder.prepare_tokenizer(tokenizer, None)
    examples = encode_rows(encoder, validation_rows, MAX_LENGTH, "validation")
    batches = [collate([examples[i] for i in b], tokenizer.pad_token_id, torch.device("cpu"))
               for b in evaluation_batches([len(e.input_ids) for e in examples], BATCH_SIZE)]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM"))
    initial = validation_loss(model, batches, contextlib.nullcontext)

    arguments = TrainingArguments(
        output_dir=str(work / "seed-run"),
        per_device_train_batch_size=BATCH_SIZE,
        max_steps=steps,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        seed=SEED,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=dataset, data_collator=default_data_collator)
    output = trainer.train()
    seconds = output.metrics["train_runtime"]
    tokens = trainer.state.num_input_tokens_seen
    result = {
        "tokensPerSecond": tokens / seconds,
        "trainTokens": tokens,
        "paddedTokens": steps * BATCH_SIZE * MAX_LENGTH,
        "trainSeconds": seconds,
        "initialValidationLoss": initial,
        "finalValidationLoss": validation_loss(model, batches, contextlib.nullcontext),
        "trainableParameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    print(json.dumps(result), flush=True)


def print_side_by_side(engine: dict, seed: dict) -> None:
    rows = [
        ("tokens/s (non-padding)", "tokensPerSecond", "{:.1f}"),
        ("peak RSS (MiB)", "peakRssMiB", "{:.0f}"),
        ("train seconds", "trainSeconds", "{:.1f}"),
        ("train tokens (non-padding)", "trainTokens", "{:.0f}"),
        ("validation loss before", "initialValidationLoss", "{:.4f}"),
        ("validation loss after", "finalValidationLoss", "{:.4f}"),
        ("trainable parameters", "trainableParameters", "{:.0f}"),
    ]
    print(f"{'':28} {'engine':>12} {'seed':>12} {'engine/seed':>12}")
    for label, key, form in rows:
        print(f"{label:28} {form.format(engine[key]):>12} {form.format(seed[key]):>12} {engine[key] / seed[key]:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="Arrow IPC file (or .jsonl) of question/answer rows")
    parser.add_argument("--validation", help="validation rows; default: a seeded hold-out of --validation-rows")
    parser.add_argument("--validation-rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per recipe (default 8: about 10 minutes on 2 cores)")
    parser.add_argument("--seed-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.seed_child:
        seed_child(args.data, args.validation, args.steps, Path(args.work))
        return

    from engine.models import ensure_default_model

    ensure_default_model()  # convert the GGUF once, outside both measurements
    with tempfile.TemporaryDirectory(prefix="train-recipes-") as folder:
        work = Path(folder)
        train, validation, train_count, validation_count = prepare_splits(args, work)
        print(f"{train_count} training rows, {validation_count} validation rows, {args.steps} steps per recipe", file=sys.stderr)
        engine = engine_recipe(train, validation, args.steps, work)
        seed = seed_recipe(train, validation, args.steps, work)
    print_side_by_side(engine, seed)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "data": str(args.data),
        "steps": args.steps,
        "trainRows": train_count,
        "validationRows": validation_count,
        "machine": {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform()},
        "engine": engine,
        "seed": seed,
        "ratios": {key: engine[key] / seed[key] for key in ("tokensPerSecond", "peakRssMiB", "finalValidationLoss")},
    }
    RESULTS_FILE.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS_FILE.relative_to(PROJECT_ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
