/**
 * Errors as OpenAI's API gives them, `{error: {message, type, param, code}}` with the right status:
 * every route of the chat server answers a problem this way.
 */
import type { z } from 'zod';

export type ErrorType =
  'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error' | 'not_found_error' | 'conflict_error';

/** An error as OpenAI's API gives it: `{error: {message, type, param, code}}`, with its status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType,
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }

  body() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** Each problem of a request body as `path: message`. */
export const issueLines = (error: z.ZodError) => error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);

/** A 400 naming every problem, the first one's field as its `param`. */
export const invalidRequest = (problems: string[]) =>
  new ApiError(400, problems.join('; '), 'invalid_request_error', 'invalid_request', problems[0]!.split(':')[0]!);
