"""The human-readable side of a run: the training curve (history.json, training_curve.png)."""

import json
from pathlib import Path


def write_history(folder: Path, history: dict) -> None:
    (Path(folder) / "history.json").write_text(json.dumps(history, indent=1) + "\n")


def plot_training_curve(history: dict, path: Path) -> None:
    """Training loss per step and validation loss per evaluation, learning rate below."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    figure, (loss_axes, lr_axes) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    steps = [s["step"] for s in history["steps"]]
    loss_axes.plot(steps, [s["loss"] for s in history["steps"]], label="training loss", linewidth=1)
    evals = [e for e in history["evals"] if not e.get("rung")]
    loss_axes.plot([e["step"] for e in evals], [e["validationLoss"] for e in evals], "o-", label="validation loss")
    rungs = [e for e in history["evals"] if e.get("rung")]  # measured where a run paused, off the evalEvery grid
    if rungs:
        loss_axes.plot([e["step"] for e in rungs], [e["validationLoss"] for e in rungs], "x", label="validation loss at a pause")
    loss_axes.set_ylabel("loss (nats per answer token)")
    loss_axes.legend()
    loss_axes.grid(alpha=0.3)
    lr_axes.plot(steps, [s["learningRate"] for s in history["steps"]], color="gray")
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("optimizer step")
    lr_axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
