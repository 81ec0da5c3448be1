"""The JSON-lines events the engine prints on stdout and the exit codes it ends with.

The event shapes are `EngineEvent` in `schemas/engine.ts` (emitted as
`schemas/json/engine-event.schema.json`). Exit codes and error kinds are defined in
`schemas/errors.ts`; its emitted `schemas/json/engine-errors.json` is the source of truth, and
`engine/tests/test_events.py` fails when the constants and error classes here differ from it.
Only events go to stdout; logs and warnings go to stderr.
"""

import json
import signal
import sys
from typing import Callable, TextIO

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_PARITY = 4
EXIT_INTERRUPTED = 130

Emit = Callable[[dict], None]


class UserError(Exception):
    """A problem the user must fix (retrying will not help); printed without a stack trace."""

    kind = "crash"
    exit_code = EXIT_CRASH


class ConfigError(UserError):
    kind = "config"
    exit_code = EXIT_CONFIG


class DataError(UserError):
    kind = "data"
    exit_code = EXIT_DATA


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived; `checkpoint` is where training can resume from (None: no step ran)."""

    def __init__(self, checkpoint: str | None):
        super().__init__(f"interrupted; checkpoint: {checkpoint}")
        self.checkpoint = checkpoint


def json_line_emitter(stream: TextIO) -> Emit:
    """Write each event as one JSON object per line, flushed at once so the reader sees it live."""

    def emit(event: dict) -> None:
        # allow_nan=False: NaN is not JSON, and a reader must never get a line it cannot parse.
        stream.write(json.dumps(event, allow_nan=False) + "\n")
        stream.flush()

    return emit


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StopRequest:
    """SIGTERM/SIGINT set a flag; the loop finishes its optimizer step, checkpoints and exits 130.

    The CLI installs it (`with StopRequest() as stop`) for the whole run, model loading included.
    A second signal gets the default behaviour, so a stuck run can still be stopped.
    """

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        for number in (signal.SIGTERM, signal.SIGINT):
            self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number, frame):
        log(f"received signal {number}: finishing this optimizer step, then checkpointing")
        self.requested = True
        signal.signal(number, signal.SIG_DFL if number == signal.SIGTERM else signal.default_int_handler)

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
