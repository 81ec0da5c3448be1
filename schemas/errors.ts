/**
 * The project's failure vocabulary, in one place for the workflows (retry policies), the activities
 * (what they throw) and the Python engine (exit codes, checked against `schemas/json/engine-errors.json`
 * by the engine's tests). Dependency-free, so the workflow bundle can import it.
 *
 * A user error (bad config, bad data, an export whose ONNX and PyTorch tokens differ) is final: retrying
 * cannot fix it. Anything else (a crash, a lost worker, a timeout) is retried by Temporal.
 */

export const ErrorTypes = {
  /** The pipeline file or a setting derived from it is wrong; the message names the key and the fix. */
  config: 'ConfigError',
  /** The data is unusable (unreadable file, too many invalid rows); the message names the file and row. */
  data: 'DataError',
  /** The ONNX export does not reproduce PyTorch's greedy tokens; deterministic, so not retried. */
  parity: 'ParityError',
  /** The engine died for another reason (out of memory, a bug); retried. */
  engineCrash: 'EngineCrash',
} as const;
export type ErrorType = (typeof ErrorTypes)[keyof typeof ErrorTypes];

/** Failure types Temporal must not retry: every retry policy in the workflows uses this list. */
export const NON_RETRYABLE_ERROR_TYPES: readonly ErrorType[] = [ErrorTypes.config, ErrorTypes.data, ErrorTypes.parity];

/** Why the `review` Update refuses a vote, as its failure's type: a client tells them apart by it (the review API's status codes). */
export const VoteRefusal = {
  closed: 'ReviewClosed',
  unknownItem: 'UnknownReviewItem',
  duplicate: 'DuplicateVote',
  invalid: 'InvalidVote',
} as const;
export type VoteRefusal = (typeof VoteRefusal)[keyof typeof VoteRefusal];

/** How `python -m engine` ends. `interrupted`: SIGTERM or SIGINT, after writing a checkpoint. */
export const EngineExit = { ok: 0, crash: 1, config: 2, data: 3, parity: 4, interrupted: 130 } as const;

/** The failure each non-zero exit becomes (interrupted is a cancellation, handled apart). */
export const errorTypeForExit: Readonly<Record<number, ErrorType>> = {
  [EngineExit.crash]: ErrorTypes.engineCrash,
  [EngineExit.config]: ErrorTypes.config,
  [EngineExit.data]: ErrorTypes.data,
  [EngineExit.parity]: ErrorTypes.parity,
};

/** The engine's `error` event kinds, and the exit code each one ends the process with. */
export const engineErrorKinds = {
  config: EngineExit.config,
  data: EngineExit.data,
  parity: EngineExit.parity,
  crash: EngineExit.crash,
} as const;
export type EngineErrorKind = keyof typeof engineErrorKinds;

export function isNonRetryable(type: string | null | undefined): boolean {
  return (NON_RETRYABLE_ERROR_TYPES as readonly string[]).includes(type ?? '');
}
