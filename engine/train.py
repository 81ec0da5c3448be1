"""Fine-tune the base model on question-answer pairs: LoRA adapters (peft) or full fine-tuning.

A flat training loop, nanoGPT-style, instead of transformers' Trainer: the engine needs an exact
resume (data position and RNG states in every checkpoint), atomic checkpoints, a checkpoint when
SIGTERM arrives, and a pause inside the budget. `train` reads top to bottom: model, data,
optimizer, resume, loop, pause, artifact.

The budget (`training.maxSteps`, or epochs) defines the run and its learning-rate schedule.
`stopAtStep` only says where this process stops: at that step (a rung) it writes a checkpoint,
measures a validation loss there if none was due (a `rung` evaluation: it never moves the best
weights, early stopping or `best/`, which belong to the straight timeline) and writes `final/`
from the best weights seen. Continuing from that checkpoint ends exactly as a straight run would.
"""

import contextlib
import json
import math
import os
import random
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import get_scheduler

from engine import checkpoints, distributed
from engine.batches import batch_tokens, collate, encode_rows, example_length, label_count, summed_loss, validation_loss, validation_sums
from engine.data import QaRows, evaluation_batches, length_grouped_batches
from engine.events import ConfigError, Emit, Interrupted, StopRequest, log
from engine.models import decoder_start_token_id, is_encoder_decoder
from engine.report import plot_training_curve, write_history
from engine.spec import resume_mismatches
from engine.strategies import build_model

SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
MAX_GRAD_NORM = 1.0  # gradient clipping, as transformers' Trainer does by default


@dataclass
class TrainState:
    """Everything besides weights and optimizer that a resumed run needs to continue exactly."""

    step: int = 0
    epoch: int = 0
    batchIndex: int = 0  # next micro-batch of batchOrder
    batchOrder: list = field(default_factory=list)  # this epoch's seeded, length-grouped batches of row indices
    bestValidationLoss: float | None = None
    bestStep: int | None = None
    evalsWithoutImprovement: int = 0
    evalPending: bool = False  # interrupted before a due evaluation; the resumed run does it first
    trainTokens: int = 0  # non-padding tokens seen by optimizer steps (encoder-decoder: encoder and decoder tokens)
    trainSeconds: float = 0.0  # time spent in optimizer steps, over all resumes
    history: dict = field(default_factory=lambda: {"steps": [], "evals": []})  # evals of rungs carry "rung": true


@dataclass
class TrainResult:
    final_dir: Path
    metrics: dict
    model: object  # the trained model, for tests


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: the most memory torch had allocated on the device; CPU: the process's peak resident set."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: `cuda` was asked for, but no CUDA GPU is visible")
    if choice in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(len(os.sched_getaffinity(0)))  # all cores this process may use
    return torch.device("cpu")


def autocast_for(device: torch.device):
    """bf16 autocast on GPUs that support it (weights and optimizer stay float32); float32 elsewhere.

    No float16 path: it would need loss scaling, and GPUs without bf16 are rare for training now.
    """
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def make_optimizer(model, training: dict) -> torch.optim.Optimizer:
    # Matrices decay; biases and norm weights do not (as in nanoGPT).
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": training["weightDecay"]},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=training["learningRate"])


def total_optimizer_steps(training: dict, train_rows: int) -> int:
    if training.get("maxSteps"):
        return training["maxSteps"]
    batches_per_epoch = math.ceil(train_rows / training["batchSize"])
    return max(1, math.ceil(training["epochs"] * batches_per_epoch / training["gradientAccumulation"]))


def pause_step(spec: dict, total_steps: int) -> int | None:
    """The rung this run pauses at: stopAtStep inside the budget; None runs to the end."""
    stop_at = spec.get("stopAtStep")
    return stop_at if stop_at is not None and stop_at < total_steps else None


def train(spec: dict, train_rows: QaRows, validation_rows: QaRows, emit: Emit, stop: StopRequest | None = None) -> TrainResult:
    started = time.perf_counter()
    stop = stop or StopRequest()  # not installed: only a caller setting `requested` stops it
    training = spec["training"]
    output_dir = Path(spec["outputDir"]).resolve()
    resume_from = spec.get("resumeFrom")
    saved_step = None  # the step whose checkpoint this run's output folder already holds

    # Model and tokens. Seed first: LoRA initialisation and new embedding rows draw random numbers.
    seed_everything(training["seed"])
    device = pick_device(training["device"])
    processes, device = distributed.join(device)  # one process, or one of torchrun's (DDP)
    autocast = autocast_for(device)
    model, tokenizer, encoder, source = build_model(spec)
    model.to(device).train()
    trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_examples = encode_rows(encoder, train_rows, training["maxLength"], "data.train")
    validation_examples = encode_rows(encoder, validation_rows, training["maxLength"], "data.validation")
    train_lengths = [example_length(e) for e in train_examples]
    pad_id = tokenizer.pad_token_id
    decoder_start = decoder_start_token_id(model) if is_encoder_decoder(model.config) else None
    validation_batches = [
        collate([validation_examples[i] for i in indices], pad_id, device, decoder_start)
        for indices in evaluation_batches([example_length(e) for e in validation_examples], training["batchSize"])
    ]

    optimizer = make_optimizer(model, training)
    total_steps = total_optimizer_steps(training, len(train_examples))
    paused_at = pause_step(spec, total_steps)
    end_step = paused_at or total_steps
    scheduler = get_scheduler(
        SCHEDULES[training["schedule"]],
        optimizer,
        num_warmup_steps=math.ceil(training["warmupRatio"] * total_steps),
        num_training_steps=total_steps,
    )

    def plan_epoch(epoch: int) -> list:
        return length_grouped_batches(train_lengths, training["batchSize"], training["seed"], epoch)

    # Fresh start, or continue exactly where a checkpoint left off (every process from the same one).
    if processes.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    if resume_from:
        weights, bundle, saved = checkpoints.load_checkpoint(resume_from)
        mismatches = resume_mismatches(spec, saved.pop("spec"))
        if mismatches:
            raise ConfigError("resumeFrom: the checkpoint was written by a different run:\n" + "\n".join(f"  - {m}" for m in mismatches))
        checkpoints.load_trainable_weights(model, weights)
        optimizer.load_state_dict(bundle["optimizer"])
        scheduler.load_state_dict(bundle["scheduler"])
        state = TrainState(**saved)
        checkpoints.restore_rng_states(checkpoints.rng_of_rank(bundle, processes.rank, processes.world_size))  # last: nothing may draw random numbers after this
        resume_from = str(Path(resume_from).resolve())
        if Path(resume_from) == checkpoints.step_folder(output_dir, state.step):
            saved_step = state.step
    else:
        state = TrainState(batchOrder=plan_epoch(0))
    if paused_at is not None and paused_at < state.step:
        raise ConfigError(f"stopAtStep: {paused_at} is before step {state.step} of the checkpoint in resumeFrom; pause at a later step")
    if processes.is_main:
        checkpoints.remove_stale(output_dir, state.step)
    emit(
        {
            "event": "start",
            "step": state.step,
            "totalSteps": total_steps,
            "stopAtStep": paused_at,
            "device": str(device),
            "trainableParameters": trainable_parameters,
            "resumedFrom": resume_from,
            "processes": processes.world_size,
        }
    )
    pausing = f", pausing at step {paused_at}" if paused_at is not None else ""
    if processes.is_main:
        on = f" on {processes.world_size} processes" if processes.world_size > 1 else ""
        log(f"training {source} on {len(train_examples)} rows, {total_steps} steps{pausing}, {trainable_parameters:,} trainable parameters{on}")

    def stop_requested() -> bool:
        """Every process acts on a stop request together, so none waits in a collective for another."""
        return processes.any(stop.requested, device)

    def evaluate() -> bool:
        """Validation loss now; track the best; True when early stopping says stop.

        The processes share the validation split out and sum what they measured; rank 0 alone
        writes best/."""
        # Each process scores its share of the split's batches; the sums make one number, the same on
        # every process, so all take the same early-stopping decision.
        total, count = processes.sum(list(validation_sums(model, processes.share(validation_batches), autocast)), device)
        loss = total / count
        state.history["evals"].append({"step": state.step, "validationLoss": loss})
        emit({"event": "eval", "step": state.step, "validationLoss": loss, "rung": False})
        state.evalPending = False
        if state.bestValidationLoss is None or loss < state.bestValidationLoss:
            state.bestValidationLoss, state.bestStep, state.evalsWithoutImprovement = loss, state.step, 0
            if processes.is_main:
                checkpoints.save_best(output_dir, state.step, loss, model)
            return False
        state.evalsWithoutImprovement += 1
        patience = training["earlyStoppingPatience"]
        return patience > 0 and state.evalsWithoutImprovement >= patience

    def save_checkpoint() -> Path:
        nonlocal saved_step
        saved_state = {**asdict(state), "spec": spec}
        rng = processes.gather(checkpoints.rng_states())  # each process's dropout drew its own numbers
        path = checkpoints.step_folder(output_dir, state.step)
        if processes.is_main:
            checkpoints.save_checkpoint(output_dir, state.step, model, optimizer, scheduler, saved_state, training["keepCheckpoints"], rng)
        saved_step = state.step
        emit({"event": "checkpoint", "step": state.step, "path": str(path)})
        return path

    def next_micro_batch() -> dict | None:
        """This process's share of the next micro-batch of the epoch's order (None: an empty share)."""
        if state.batchIndex == len(state.batchOrder):  # epoch done: the next one has its own order
            state.epoch, state.batchIndex = state.epoch + 1, 0
            state.batchOrder = plan_epoch(state.epoch)
        indices = processes.share(state.batchOrder[state.batchIndex])
        state.batchIndex += 1
        return collate([train_examples[i] for i in indices], pad_id, device, decoder_start) if indices else None

    stop_early = False
    if stop_requested():  # during loading: nothing new to save
        raise Interrupted(resume_from)
    if state.step == 0 and not state.history["evals"]:
        evaluate()  # before any training, so the improvement is known
    elif state.evalPending:
        stop_early = evaluate()
    while state.step < end_step and not stop_early:
        if stop_requested():  # before this process did any step
            raise Interrupted(resume_from)

        # One optimizer step over gradientAccumulation micro-batches, normalised by their
        # total answer-token count (over all processes) so every token weighs the same.
        step_started = time.perf_counter()
        micro_batches = [b for b in (next_micro_batch() for _ in range(training["gradientAccumulation"])) if b is not None]
        local_labels = sum(label_count(b) for b in micro_batches)
        local_tokens = sum(batch_tokens(b) for b in micro_batches)
        labels_in_step, tokens = processes.sum([local_labels, local_tokens], device)
        step_loss = 0.0
        for batch in micro_batches:
            loss = summed_loss(model, batch, autocast) / labels_in_step
            loss.backward()
            step_loss += loss.item()
        trainable = [p for p in model.parameters() if p.requires_grad]
        processes.sum_gradients(trainable)  # now every process holds the one-process gradient
        (step_loss,) = processes.sum([step_loss], device)
        torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()  # honest step times
        seconds = time.perf_counter() - step_started

        state.step += 1
        tokens = int(tokens)
        state.trainTokens += tokens
        state.trainSeconds += seconds
        if not math.isfinite(step_loss):
            raise ConfigError(f"training diverged: the loss is {step_loss} at step {state.step}; lower training.learningRate")
        record = {"step": state.step, "loss": step_loss, "learningRate": learning_rate, "tokensPerSecond": tokens / seconds}
        state.history["steps"].append({**record, "tokens": tokens, "seconds": seconds})
        emit({"event": "step", **record})

        eval_due = state.step % training["evalEvery"] == 0 or state.step == total_steps
        if eval_due and stop_requested():
            state.evalPending = True  # do not hold up the shutdown; the resumed run evaluates first
        elif eval_due:
            stop_early = evaluate()
        if stop_requested():
            raise Interrupted(str(save_checkpoint()))
        if state.step % training["checkpointEvery"] == 0 and state.step < total_steps and not stop_early:
            save_checkpoint()

    # The pause: a checkpoint first (the straight timeline's state, before anything else touches
    # the model), then a rung evaluation when no validation loss was due here. The rung is kept in
    # the checkpoint's history for the continuation, but never picks the best weights.
    paused = paused_at is not None and state.step == paused_at and not stop_early
    if paused and saved_step != state.step:
        save_checkpoint()
    if not processes.is_main:  # what follows writes the artifact: rank 0's work alone
        processes.finish()
        return TrainResult(output_dir / "final", {}, model)
    final_step, final_loss = state.bestStep, state.bestValidationLoss  # the weights final/ gets
    if paused:
        last = state.history["evals"][-1]
        if last["step"] != state.step:
            last = {"step": state.step, "validationLoss": validation_loss(model, validation_batches, autocast), "rung": True}
            state.history["evals"].append(last)
            emit({"event": "eval", **last})
            checkpoints.rewrite_state(checkpoints.step_folder(output_dir, state.step), {**asdict(state), "spec": spec})
        if last.get("rung") and last["validationLoss"] < final_loss:  # the current weights, never written to best/
            final_step, final_loss = state.step, last["validationLoss"]
    elif state.history["evals"][-1]["step"] != state.step or state.history["evals"][-1].get("rung"):
        evaluate()
        final_step, final_loss = state.bestStep, state.bestValidationLoss

    # The artifact: the weights with the best validation loss (the last ones unless they got worse).
    last_validation_loss = state.history["evals"][-1]["validationLoss"]
    if final_step != state.step:
        best_weights = checkpoints.load_best(output_dir, final_step)
        if best_weights is None:
            log(f"warning: best weights of step {final_step} are missing; the artifact keeps the last weights")
            final_step, final_loss = state.step, last_validation_loss
        else:
            checkpoints.load_trainable_weights(model, best_weights)
    metrics = {
        "initialValidationLoss": state.history["evals"][0]["validationLoss"],
        "finalValidationLoss": final_loss,  # of the weights in final/
        "bestValidationLoss": final_loss,
        "bestStep": final_step,
        "lastValidationLoss": last_validation_loss,
        "steps": state.step,
        "totalSteps": total_steps,
        "pausedAtStep": state.step if paused else None,
        "stoppedEarly": int(stop_early),
        "trainRows": len(train_examples),
        "validationRows": len(validation_examples),
        "trainableParameters": trainable_parameters,
        "trainTokens": state.trainTokens,
        "trainSeconds": state.trainSeconds,
        "tokensPerSecond": state.trainTokens / state.trainSeconds if state.trainSeconds else None,
        "wallSeconds": time.perf_counter() - started,
        "peakMemoryBytes": peak_memory_bytes(device),
        "processes": processes.world_size,
    }
    final_dir = write_final_artifact(output_dir, model, tokenizer, encoder, spec, state.history, metrics)
    emit({"event": "done", "step": state.step, "outputDir": str(output_dir), "metrics": metrics})
    processes.finish()
    return TrainResult(final_dir, metrics, model)


def write_final_artifact(output_dir: Path, model, tokenizer, encoder, spec, history, metrics) -> Path:
    """`<outputDir>/final/`: weights or adapter, tokenizer, prompt format, spec, curve, metrics."""
    final_dir = output_dir / "final"
    temporary = output_dir / ".tmp-final"
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)  # a peft model saves only its adapter
    tokenizer.save_pretrained(temporary)
    encoder.format.save(temporary)
    (temporary / "train_config.json").write_text(json.dumps(spec, indent=2) + "\n")
    write_history(temporary, history)
    plot_training_curve(history, temporary / "training_curve.png")
    (temporary / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.rename(temporary, final_dir)
    return final_dir
