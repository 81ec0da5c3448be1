"""tuneline's engine: tensor work spawned by the TypeScript activities.

Each subcommand reads a JSON spec, prints JSON-lines events on stdout (the `EngineEvent` shapes in
schemas/engine.ts) and logs on stderr. Exit codes: 0 ok, 1 crash, 2 config error, 3 data error,
130 interrupted (after writing a checkpoint).
"""

import argparse
import os
import sys
import traceback

from engine.events import (
    EXIT_CRASH,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Emit,
    Interrupted,
    StopRequest,
    UserError,
    json_line_emitter,
    log,
)


def train_command(args, emit: Emit) -> int:
    # Spec and data are checked before torch is imported (seconds), so user errors come back fast.
    from engine.data import read_splits
    from engine.spec import load_spec

    with StopRequest() as stop:
        spec = load_spec(args.spec, resume_from=args.resume_from)
        train_rows, validation_rows = read_splits(spec)

        from engine.train import train

        train(spec, train_rows, validation_rows, emit, stop)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="fine-tune the base model on the train split (LoRA or full)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""Fine-tune the base model named in the spec: LoRA adapters or all weights.

events:   start, eval (step 0, before training), step, eval, checkpoint, ..., done; error on failure
signals:  SIGTERM or SIGINT finishes the current optimizer step, writes a checkpoint, exits 130
writes:   <outputDir>/checkpoints/step-N (the last two) and best/ (lowest validation loss);
          <outputDir>/final/: adapter or weights with the lowest validation loss, tokenizer,
          prompt_format.json, train_config.json, history.json, training_curve.png, metrics.json""",
    )
    train.add_argument("--spec", required=True, metavar="SPEC.json", help="TrainSpec JSON (schemas/json/train-spec.schema.json)")
    train.add_argument(
        "--resume-from",
        metavar="CHECKPOINT",
        help="checkpoint folder (<outputDir>/checkpoints/step-N) to continue from exactly; overrides spec.resumeFrom",
    )
    train.set_defaults(run=train_command)
    return parser


def events_to_real_stdout() -> Emit:
    """Keep stdout for events only: anything else printed (by us or a library) goes to stderr."""
    sys.stdout.flush()
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return json_line_emitter(events)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emit = events_to_real_stdout()
    try:
        return args.run(args, emit)
    except UserError as error:
        log(f"error: {error}")
        emit({"event": "error", "kind": error.kind, "message": str(error)})
        return error.exit_code
    except Interrupted as interrupted:
        log(f"interrupted; resume with --resume-from {interrupted.checkpoint}" if interrupted.checkpoint else "interrupted before any step")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        log("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug or a broken environment: retryable, with the trace for whoever fixes it
        traceback.print_exc()
        emit({"event": "error", "kind": "crash", "message": f"{type(error).__name__}: {error}"})
        return EXIT_CRASH
