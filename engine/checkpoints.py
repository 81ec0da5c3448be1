"""Atomic, resumable checkpoints under `<outputDir>/checkpoints/`.

A checkpoint `step-N/` holds the trainable weights (the LoRA adapter, or every weight for full
fine-tuning), the optimizer and scheduler, the RNG states and the training state (data position,
best validation loss, early-stopping counter, history). It is written to `.tmp-step-N/`, fsynced,
marked `complete` last and renamed into place, so a folder without the marker is never trusted.
`best/` holds the weights with the lowest validation loss so far, written the same way.

The newest `training.keepCheckpoints` step checkpoints stay after training (nothing deletes them
when the run ends), so a paused run can be continued and any of them re-exported.
"""

import json
import os
import random
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from engine.events import ConfigError, log

COMPLETE_MARKER = "complete"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
BEST_FILE = "best.json"


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def step_folder(output_dir: Path, step: int) -> Path:
    return checkpoints_dir(output_dir) / f"step-{step}"


def trainable_weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_weights(model, weights: dict[str, torch.Tensor]) -> None:
    parameters = dict(model.named_parameters())
    expected = {name for name, p in parameters.items() if p.requires_grad}
    assert expected == set(weights), f"checkpoint weights do not match the model: {sorted(expected ^ set(weights))[:5]}"
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor)


def rng_states() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def rng_of_rank(bundle: dict, rank: int, world_size: int) -> dict:
    """The RNG states a process resumes with: its own when the checkpoint was written by as many
    processes (their dropout drew different numbers), else those of rank 0."""
    ranks = bundle.get("rngOfRanks")
    return ranks[rank] if ranks and len(ranks) == world_size else bundle["rng"]


def fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_folder_atomically(destination: Path, write: Callable[[Path], None], marker: dict) -> None:
    """Let `write` fill `.tmp-<name>/`, mark it complete, fsync, and rename it to `destination`."""
    temporary = destination.parent / f".tmp-{destination.name}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    write(temporary)
    (temporary / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")
    for file in temporary.iterdir():
        fsync(file)
    fsync(temporary)
    replaced = destination.parent / f".old-{destination.name}"
    if destination.exists():  # e.g. `best/`, or a step redone after resuming from an earlier checkpoint
        shutil.rmtree(replaced, ignore_errors=True)
        os.rename(destination, replaced)
    os.rename(temporary, destination)
    fsync(destination.parent)
    shutil.rmtree(replaced, ignore_errors=True)


def is_complete(folder: Path) -> bool:
    return (Path(folder) / COMPLETE_MARKER).is_file()


def save_checkpoint(output_dir: Path, step: int, model, optimizer, scheduler, state: dict, keep: int, rng: list | None = None) -> Path:
    """Write `step-N/`, then prune to the newest `keep` step checkpoints.

    `rng`: the RNG states of every process of a distributed run, rank order (this process's alone when None).
    """
    destination = step_folder(output_dir, step)

    def write(folder: Path) -> None:
        save_file(trainable_weights(model), folder / WEIGHTS_FILE)
        # RNG states are taken now, right after the optimizer step, where the resumed run picks up.
        states = rng or [rng_states()]
        bundle = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": states[0]}
        if len(states) > 1:
            bundle["rngOfRanks"] = states
        torch.save(bundle, folder / OPTIMIZER_FILE)
        (folder / STATE_FILE).write_text(json.dumps(state) + "\n")

    write_folder_atomically(destination, write, {"step": step})
    prune_checkpoints(output_dir, keep)
    return destination


def rewrite_state(checkpoint: Path, state: dict) -> None:
    """Replace a complete checkpoint's training state in place (one atomic file rename).

    For what a pause measures after its checkpoint is written (the rung evaluation), so the
    continuation's history keeps it; weights, optimizer and RNG states are left untouched.
    """
    temporary = Path(checkpoint) / f".tmp-{STATE_FILE}"
    temporary.write_text(json.dumps(state) + "\n")
    fsync(temporary)
    os.replace(temporary, Path(checkpoint) / STATE_FILE)
    fsync(Path(checkpoint))


def step_checkpoints(output_dir: Path) -> list[Path]:
    """Complete `step-N` folders, oldest first."""
    folder = checkpoints_dir(output_dir)
    found = [p for p in folder.glob("step-*") if p.name[5:].isdigit() and is_complete(p)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[5:]))


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    """Keep the newest `keep` step checkpoints (the best weights live apart, in `best/`)."""
    assert keep >= 1, "keepCheckpoints must keep at least the newest checkpoint"
    for old in step_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale(output_dir: Path, resumed_step: int) -> None:
    """Clear what does not belong to this run's timeline before it writes anything.

    Temp folders of a killed write are never valid; checkpoints after the resumed step (or all of
    them, and `best/`, on a fresh start) come from an abandoned run and would confuse pruning.
    """
    folder = checkpoints_dir(output_dir)
    if not folder.is_dir():
        return
    stale = [p for p in folder.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    later = [p for p in step_checkpoints(output_dir) if int(p.name[5:]) > resumed_step]
    if later:
        log(f"note: removing {len(later)} checkpoint(s) after step {resumed_step} left by an earlier run in {folder}")
    if resumed_step == 0 and (folder / "best").exists():
        stale.append(folder / "best")
    for path in stale + later:
        shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(weights, optimizer/scheduler/RNG bundle, training state) of a complete checkpoint."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"resumeFrom: checkpoint folder {path} does not exist")
    if not is_complete(folder):
        raise ConfigError(f"resumeFrom: {path} is not a complete checkpoint (no `{COMPLETE_MARKER}` marker); use an earlier step-N folder")
    # weights_only=False: the bundle holds Python and numpy RNG states; it is a file this engine wrote.
    bundle = torch.load(folder / OPTIMIZER_FILE, map_location="cpu", weights_only=False)
    state = json.loads((folder / STATE_FILE).read_text())
    return load_file(folder / WEIGHTS_FILE), bundle, state


def save_best(output_dir: Path, step: int, validation_loss: float, model) -> None:
    def write(folder: Path) -> None:
        save_file(trainable_weights(model), folder / WEIGHTS_FILE)
        (folder / BEST_FILE).write_text(json.dumps({"step": step, "validationLoss": validation_loss}) + "\n")

    write_folder_atomically(checkpoints_dir(output_dir) / "best", write, {"step": step})


def load_best(output_dir: Path, step: int) -> dict[str, torch.Tensor] | None:
    """The best weights if `best/` is complete and from `step`, else None."""
    folder = checkpoints_dir(output_dir) / "best"
    if not is_complete(folder):
        return None
    if json.loads((folder / BEST_FILE).read_text())["step"] != step:
        return None
    return load_file(folder / WEIGHTS_FILE)
