/**
 * The chat server: an OpenAI-compatible API on the generator the evaluation uses, so what was
 * evaluated is what is served.
 *
 * - `POST /v1/chat/completions`: answers, streamed as server-sent events or whole; `max_tokens`
 *   (or `max_completion_tokens`), `temperature` (absent or 0: greedy, as evaluated), `top_p`, `stop`,
 *   `seed`, usage counts; a grounded model's answer names the known pairs it was given (`tuneline`).
 * - `GET /v1/models`, `GET /healthz` (the process is up), `GET /readyz` (a model is loaded).
 * - `POST /v1/feedback`: a rating of an answer (up or down, comment, corrected answer), kept with the
 *   answer, its model and its conversation (serve/feedback.ts); `GET /` a web chat page that rates too.
 * - Limits on body size, messages, message length and new tokens; an optional API key; a per-client
 *   rate limit; at most `maxConcurrent` answers generate at once (each a token at a time, so streams
 *   interleave) and `maxQueue` wait, beyond that 503; errors in OpenAI's shape with the right status.
 * - `GET /review` and `/v1/reviews/...` (with `review`): human review of runs waiting for it (serve/review.ts).
 * - `swap(model)` serves another model from the next request on; the old one is closed once the
 *   answers it is giving end. `shutdown()` refuses new requests and lets open streams finish.
 */
import { randomBytes, randomInt } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { KnownPair } from '../schemas/engine';
import type { ChatMessage, FinishReason, GenerateOptions, Generation, Generator, Prompt } from './generation';
import { CHAT_CSS, CHAT_HTML, CHAT_JS } from './chat-page';
import { Rating, type FeedbackStore } from './feedback';
import { ApiError, invalidRequest, issueLines, type ErrorType } from './api-error';
import { groundedQuestion } from './grounding';
import { registerReviewRoutes, type ReviewBackend } from './review';
import { REVIEW_CSS, REVIEW_HTML, REVIEW_JS } from './review-page';
import type { ReviewerStore } from './reviewers';

export interface ChatModel {
  /** What `/v1/models` lists and responses name, e.g. `electronics-support@<run id>`. */
  id: string;
  generator: Generator;
  /** The run's decoding controls (repetition penalty, n-gram ban, loop stop, end rule), as evaluated. */
  decoding: Omit<GenerateOptions, 'maxNewTokens'>;
  /** The known pairs for a question, for a model trained with grounding; null otherwise. */
  knownPairs: ((question: string) => Promise<KnownPair[]>) | null;
  close(): Promise<void>;
}

export interface ServerLimits {
  /** Request bodies above this many bytes: 413. */
  maxBodyBytes: number;
  maxMessages: number;
  maxMessageChars: number;
  /** The most `max_tokens` a request may ask for. */
  maxNewTokens: number;
  /** New tokens when a request does not say. */
  defaultMaxTokens: number;
  /** Answers generating at once, and requests waiting beyond them. */
  maxConcurrent: number;
  maxQueue: number;
  /** Chat requests per client (API key, else address) per window; null: no limit. */
  rateLimit: { max: number; windowMs: number } | null;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxBodyBytes: 256 * 1024,
  maxMessages: 64,
  maxMessageChars: 8000,
  maxNewTokens: 1024,
  defaultMaxTokens: 256,
  maxConcurrent: 4,
  maxQueue: 64,
  rateLimit: { max: 60, windowMs: 60_000 },
};

export interface ServerOptions {
  limits?: Partial<ServerLimits>;
  /** Bearer keys that may call the API; empty: no key needed. */
  apiKeys?: string[];
  /** Where answers and their ratings are kept; without it `POST /v1/feedback` answers 503. */
  feedback?: FeedbackStore;
  /** The review page and API (serve/review.ts): runs waiting for review, and reviewers' tokens. */
  review?: { backend: ReviewBackend; reviewers: ReviewerStore };
  /** Names a request's `model` may use besides the served id (e.g. the pipeline's name). */
  aliases?: string[];
  logger?: boolean;
}

const TextPart = z.looseObject({ type: z.literal('text'), text: z.string() });
const Message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string(), z.array(TextPart)]),
});

/** The request body; fields this server does not use are accepted and ignored, as OpenAI clients send many. */
const ChatRequest = z.looseObject({
  model: z.string().min(1),
  messages: z.array(Message).min(1),
  stream: z.boolean().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  seed: z.number().int().nullish(),
  n: z.literal(1).nullish(),
});
type ChatRequest = z.infer<typeof ChatRequest>;

const FINISH: Record<FinishReason, 'stop' | 'length'> = {
  stop: 'stop',
  'stop-string': 'stop',
  repetition: 'stop',
  length: 'length',
  cancelled: 'stop',
};

/** Holds the model being served; a swapped-out model is closed once its last answer ends. */
class ModelSlot {
  private users = new Map<ChatModel, number>();

  constructor(public current: ChatModel | null) {}

  acquire(): { model: ChatModel; release: () => void } | null {
    const model = this.current;
    if (!model) return null;
    this.users.set(model, (this.users.get(model) ?? 0) + 1);
    let released = false;
    return {
      model,
      release: () => {
        if (released) return;
        released = true;
        const left = this.users.get(model)! - 1;
        this.users.set(model, left);
        if (left === 0 && model !== this.current) {
          this.users.delete(model);
          void model.close();
        }
      },
    };
  }

  async swap(next: ChatModel): Promise<void> {
    const previous = this.current;
    this.current = next;
    if (previous && !this.users.get(previous)) {
      this.users.delete(previous);
      await previous.close();
    }
  }
}

/** At most `limit` holders at once; `maxQueue` more wait in order; beyond that, null. */
class Gate {
  private active = 0;
  private waiting: Array<() => void> = [];

  constructor(
    private readonly limit: number,
    private readonly maxQueue: number,
  ) {}

  async enter(): Promise<(() => void) | null> {
    if (this.active >= this.limit) {
      if (this.waiting.length >= this.maxQueue) return null;
      await new Promise<void>((go) => this.waiting.push(go));
    } else this.active++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }
}

const messageText = (content: z.infer<typeof Message>['content']) =>
  typeof content === 'string' ? content : content.map((part) => part.text).join('');

export interface ChatServer {
  app: FastifyInstance;
  /** Serves `model` from the next request on. */
  swap(model: ChatModel): Promise<void>;
  /** Refuses new requests (503), waits up to `graceMs` for open answers, then closes the server and the model. */
  shutdown(graceMs?: number): Promise<void>;
}

export async function createChatServer(initial: ChatModel | null, options: ServerOptions = {}): Promise<ChatServer> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const slot = new ModelSlot(initial);
  const feedback = options.feedback;
  const gate = new Gate(limits.maxConcurrent, limits.maxQueue);
  const open = new Set<Promise<unknown>>();
  let stopping = false;
  const app = Fastify({ logger: options.logger ?? false, bodyLimit: limits.maxBodyBytes });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err instanceof ApiError) return reply.status(err.status).send(err.body());
    const status = err.statusCode ?? 500;
    const known: Record<number, [ErrorType, string]> = {
      400: ['invalid_request_error', 'invalid_request'],
      413: ['invalid_request_error', 'request_too_large'],
      415: ['invalid_request_error', 'unsupported_media_type'],
      429: ['rate_limit_error', 'rate_limit_exceeded'],
    };
    const [type, code] = known[status] ?? ['server_error', 'internal_error'];
    const message =
      status === 413
        ? `the request body is larger than ${limits.maxBodyBytes} bytes`
        : status >= 500
          ? 'the server failed to answer'
          : err.message;
    if (status >= 500) app.log.error(err);
    return reply.status(status).send(new ApiError(status, message, type, code).body());
  });
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send(new ApiError(404, `no route ${req.method} ${req.url}`, 'not_found_error', 'unknown_route').body()),
  );

  const keys = new Set(options.apiKeys ?? []);
  const bearer = (req: FastifyRequest) => /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]?.trim();
  const authorize = async (req: FastifyRequest) => {
    if (stopping) throw new ApiError(503, 'the server is shutting down; retry on another instance', 'server_error', 'shutting_down');
    if (keys.size === 0) return;
    const key = bearer(req);
    if (!key) throw new ApiError(401, 'no API key: send it as Authorization: Bearer <key>', 'authentication_error', 'missing_api_key');
    if (!keys.has(key)) throw new ApiError(401, 'the API key is not one this server accepts', 'authentication_error', 'invalid_api_key');
  };

  if (limits.rateLimit)
    await app.register(rateLimit, {
      global: false,
      max: limits.rateLimit.max,
      timeWindow: limits.rateLimit.windowMs,
      keyGenerator: (req) => bearer(req) ?? req.ip,
      errorResponseBuilder: (_req, context) =>
        Object.assign(
          new ApiError(
            429,
            `rate limit reached: ${context.max} requests per ${Math.round(limits.rateLimit!.windowMs / 1000)} s; retry in ${Math.ceil(context.ttl / 1000)} s`,
            'rate_limit_error',
            'rate_limit_exceeded',
          ),
          { statusCode: 429 },
        ),
    });

  // The web chat page: its own files only, nothing inline (a strict Content-Security-Policy).
  const page = (type: string, body: string) => async (_req: FastifyRequest, reply: FastifyReply) =>
    reply.type(type).header('Content-Security-Policy', "default-src 'self'").header('X-Content-Type-Options', 'nosniff').send(body);
  app.get('/', page('text/html; charset=utf-8', CHAT_HTML));
  app.get('/chat.js', page('text/javascript; charset=utf-8', CHAT_JS));
  app.get('/chat.css', page('text/css; charset=utf-8', CHAT_CSS));
  if (options.review) {
    app.get('/review', page('text/html; charset=utf-8', REVIEW_HTML));
    app.get('/review.js', page('text/javascript; charset=utf-8', REVIEW_JS));
    app.get('/review.css', page('text/css; charset=utf-8', REVIEW_CSS));
    registerReviewRoutes(app, options.review);
  }
  app.get('/favicon.ico', async (_req, reply) => reply.status(204).send());
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) =>
    slot.current && !stopping
      ? { status: 'ready', model: slot.current.id }
      : reply.status(503).send(new ApiError(503, stopping ? 'shutting down' : 'no model loaded yet', 'server_error', 'not_ready').body()),
  );
  app.get('/v1/models', { preHandler: authorize }, async () => ({
    object: 'list',
    data: slot.current ? [{ id: slot.current.id, object: 'model', created: 0, owned_by: 'tuneline' }] : [],
  }));

  /** The checked request: every problem with it at once, as one 400. */
  function parseRequest(body: unknown): ChatRequest {
    const parsed = ChatRequest.safeParse(body);
    const problems = parsed.success ? [] : issueLines(parsed.error);
    if (parsed.success) {
      const r = parsed.data;
      if (r.messages.length > limits.maxMessages) problems.push(`messages: ${r.messages.length} messages; at most ${limits.maxMessages}`);
      r.messages.forEach((m, n) => {
        const length = messageText(m.content).length;
        if (length > limits.maxMessageChars)
          problems.push(`messages.${n}.content: ${length} characters; at most ${limits.maxMessageChars}`);
      });
      const asked = r.max_completion_tokens ?? r.max_tokens;
      if (asked != null && asked > limits.maxNewTokens) problems.push(`max_tokens: ${asked}; at most ${limits.maxNewTokens}`);
    }
    if (problems.length > 0) throw invalidRequest(problems);
    return parsed.data!;
  }

  /** The prompt the model gets: the conversation, its last user turn with its known pairs when grounded. */
  async function promptOf(model: ChatModel, request: ChatRequest): Promise<{ prompt: Prompt; pairs: KnownPair[]; asked: ChatMessage[] }> {
    const asked = request.messages.map(
      (m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: messageText(m.content) }) as ChatMessage,
    );
    const messages = asked.map((m) => ({ ...m }));
    const last = messages.at(-1)!;
    let pairs: KnownPair[] = [];
    if (model.knownPairs && last.role === 'user') {
      pairs = await model.knownPairs(last.content);
      last.content = groundedQuestion(model.generator.tokenizer.promptFormat, last.content, pairs);
    }
    const prompt = messages as Exclude<Prompt, string>;
    let promptTokens: number;
    try {
      promptTokens = model.generator.tokenizer.encodePrompt(prompt).length; // the conversation's own checks (roles, order), as a 400
    } catch (err) {
      throw new ApiError(400, (err as Error).message, 'invalid_request_error', 'invalid_conversation', 'messages');
    }
    const { maxPositions } = model.generator;
    if (maxPositions !== null && promptTokens > maxPositions) {
      const message = `messages: the prompt is ${promptTokens} tokens, more than the ${maxPositions} positions this model has; shorten the conversation`;
      throw new ApiError(400, message, 'invalid_request_error', 'context_length_exceeded', 'messages');
    }
    return { prompt, pairs, asked };
  }

  function generateOptions(model: ChatModel, request: ChatRequest, signal: AbortSignal): GenerateOptions {
    const maxNewTokens = request.max_completion_tokens ?? request.max_tokens ?? limits.defaultMaxTokens;
    const stop = request.stop == null ? [] : typeof request.stop === 'string' ? [request.stop] : request.stop;
    const { endProbability, ...controls } = model.decoding;
    const sampled = request.temperature != null && request.temperature > 0;
    return sampled
      ? {
          ...controls,
          maxNewTokens,
          stop,
          signal,
          greedy: false,
          temperature: request.temperature!,
          topP: request.top_p ?? 1,
          seed: request.seed ?? randomInt(2 ** 31),
        }
      : { ...controls, endProbability, maxNewTokens, stop, signal, greedy: true };
  }

  app.post('/v1/chat/completions', { preHandler: authorize, config: { rateLimit: limits.rateLimit ? {} : false } }, async (req, reply) => {
    const request = parseRequest(req.body);
    const served = slot.acquire();
    if (!served) throw new ApiError(503, 'no model loaded yet; retry shortly', 'server_error', 'not_ready');
    const { model, release } = served;
    const aliases = new Set([model.id, model.id.split('@')[0]!, ...(options.aliases ?? [])]);
    if (!aliases.has(request.model)) {
      release();
      throw new ApiError(
        404,
        `model ${request.model} is not served here; this server serves ${model.id}`,
        'not_found_error',
        'model_not_found',
        'model',
      );
    }
    const leave = await gate.enter();
    if (!leave) {
      release();
      throw new ApiError(
        503,
        `the server is busy: ${limits.maxQueue} requests are waiting already; retry shortly`,
        'server_error',
        'overloaded',
      );
    }
    const abort = new AbortController();
    reply.raw.on('close', () => abort.abort());
    const done = (async () => {
      try {
        const { prompt, pairs, asked } = await promptOf(model, request);
        const keep = (g: Generation) =>
          feedback?.recordAnswer({ id, model: model.id, messages: asked, answer: g.text, knownPairs: pairs.map((p) => p.id) });
        const options = generateOptions(model, request, abort.signal);
        const promptTokens = model.generator.tokenizer.encodePrompt(prompt).length;
        const id = `chatcmpl-${randomBytes(12).toString('hex')}`;
        const created = Math.floor(Date.now() / 1000);
        const base = { id, created, model: model.id };
        const metadata = { tuneline: { known_pairs: pairs.map(({ id, question, similarity }) => ({ id, question, similarity })) } };
        const usage = (g: Generation) => ({
          prompt_tokens: promptTokens,
          completion_tokens: g.tokens.length,
          total_tokens: promptTokens + g.tokens.length,
        });
        if (!request.stream) {
          const [answer] = await model.generator.generate([prompt], options);
          keep(answer!);
          return reply.send({
            ...base,
            object: 'chat.completion',
            choices: [
              {
                index: 0,
                message: { role: 'assistant', content: answer!.text },
                finish_reason: FINISH[answer!.finishReason],
                logprobs: null,
              },
            ],
            usage: usage(answer!),
            ...metadata,
          });
        }
        reply.hijack();
        const out = reply.raw;
        out.writeHead(200, {
          'Content-Type': 'text/event-stream',
          'Cache-Control': 'no-cache',
          Connection: 'keep-alive',
          'X-Accel-Buffering': 'no',
        });
        const send = (data: unknown) => out.write(`data: ${JSON.stringify(data)}\n\n`);
        const chunk = (delta: object, finish: string | null) => ({
          ...base,
          object: 'chat.completion.chunk',
          choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
        });
        try {
          send({ ...chunk({ role: 'assistant', content: '' }, null), ...metadata });
          const stream = model.generator.stream(prompt, options);
          let next = await stream.next();
          while (!next.done) {
            if (next.value.text) send(chunk({ content: next.value.text }, null));
            next = await stream.next();
          }
          const answer = next.value;
          if (!abort.signal.aborted) {
            keep(answer);
            send(chunk({}, FINISH[answer.finishReason]));
            if (request.stream_options?.include_usage)
              send({ ...base, object: 'chat.completion.chunk', choices: [], usage: usage(answer) });
            out.write('data: [DONE]\n\n');
          }
        } catch (err) {
          // The status line is sent already: the error goes as the stream's last event.
          app.log.error(err);
          send(new ApiError(500, 'the server failed while answering', 'server_error', 'internal_error').body());
        } finally {
          out.end();
        }
      } finally {
        leave();
        release();
      }
    })();
    open.add(done);
    try {
      return await done;
    } finally {
      open.delete(done);
    }
  });

  app.post('/v1/feedback', { preHandler: authorize }, async (req, reply) => {
    if (!feedback) throw new ApiError(503, 'feedback is off on this server (tuneline serve --no-feedback)', 'server_error', 'feedback_off');
    const parsed = Rating.safeParse(req.body);
    if (!parsed.success) throw invalidRequest(issueLines(parsed.error));
    const id = feedback.rate(parsed.data, bearer(req) ? 'api-key' : req.ip);
    if (id === null)
      throw new ApiError(
        404,
        `no answer ${parsed.data.completion_id} on this server; rate the id a chat completion returned`,
        'not_found_error',
        'unknown_completion',
        'completion_id',
      );
    return reply.status(201).send({ id, object: 'feedback', completion_id: parsed.data.completion_id, rating: parsed.data.rating });
  });

  return {
    app,
    swap: (model) => slot.swap(model),
    async shutdown(graceMs = 30_000) {
      stopping = true;
      await Promise.race([Promise.allSettled([...open]), new Promise((r) => setTimeout(r, graceMs).unref())]);
      await app.close();
      if (slot.current) await slot.current.close();
    },
  };
}
