/**
 * The contract between the TypeScript activities and the Python engine: the JSON-lines events every
 * `python -m engine` command prints, and every file the engine writes that Node reads. The engine's
 * tests validate real outputs against the JSON Schemas emitted from here (`schemas/json/`); the
 * activities parse with these schemas, never with a cast. The spec the engine reads is in
 * `train-spec.ts`; exit codes and error kinds are in `errors.ts`.
 */
import { z } from 'zod';
import { engineErrorKinds, type EngineErrorKind } from './errors';

const count = z.number().int().min(0);
const seconds = z.number().min(0);

/** Systems that answer the evaluation rows: the tuned model and its baselines. */
export const SystemName = z.enum(['tuned', 'tuned-grounded', 'base', 'base-grounded', 'retrieval']);
export type SystemName = z.infer<typeof SystemName>;
/** The systems in the order tables show them. */
export const SYSTEMS: readonly SystemName[] = SystemName.options;

/**
 * One line the engine prints on stdout. Unknown lines are logged, never parsed as events. An
 * interrupted run (SIGTERM or SIGINT) ends with a `checkpoint` event and exit code 130, no `error`.
 */
export const EngineEvent = z.discriminatedUnion('event', [
  z.strictObject({
    event: z.literal('start'),
    step: count.describe("The step training starts from: 0, or the resumed checkpoint's step."),
    totalSteps: count.describe('The whole budget (maxSteps or epochs); the learning-rate schedule spans it.'),
    stopAtStep: count.nullable().describe('Where this run pauses inside the budget (a rung); null: it runs to the end.'),
    device: z.string(),
    trainableParameters: count,
    resumedFrom: z.string().nullable(),
    processes: count.default(1).describe("Processes training together (training.distributed.processes, torchrun's WORLD_SIZE)."),
  }),
  z.strictObject({
    event: z.literal('step'),
    step: count,
    loss: z.number(),
    learningRate: z.number(),
    tokensPerSecond: z.number().describe('Non-padding tokens per second over the step.'),
  }),
  z.strictObject({
    event: z.literal('eval'),
    step: count,
    validationLoss: z.number(),
    rung: z.boolean().describe('Measured because the run pauses here, off the evalEvery grid; it never picks the best weights.'),
  }),
  z.strictObject({ event: z.literal('checkpoint'), step: count, path: z.string() }),
  z.strictObject({
    event: z.literal('model'),
    kind: z.enum(['gguf', 'folder', 'hub']),
    path: z.string().nullable().describe('The file (gguf) or folder whose bytes are the model; null for a hub id.'),
    revision: z.string().describe('What else defines the weights, e.g. the GGUF conversion version; empty when nothing.'),
  }),
  z.strictObject({
    event: z.literal('done'),
    step: count,
    outputDir: z.string().describe("The command's output folder (train: the artifact is its `final/` folder)."),
    metrics: z
      .record(z.string(), z.number().nullable())
      .describe('Per command: TrainMetrics, ExportMetrics, RetrievalMetrics, PerplexityMetrics, or `<system>.<metric>` for score.'),
  }),
  z.strictObject({
    event: z.literal('error'),
    kind: z.enum(Object.keys(engineErrorKinds) as [EngineErrorKind, ...EngineErrorKind[]]),
    message: z.string(),
  }),
]);
export type EngineEvent = z.infer<typeof EngineEvent>;
export type EngineEventOf<K extends EngineEvent['event']> = Extract<EngineEvent, { event: K }>;

/** `train`: the `done` event's metrics, also written as `final/metrics.json`. */
export const TrainMetrics = z
  .strictObject({
    initialValidationLoss: z.number().describe('Before any training step.'),
    finalValidationLoss: z.number().describe('Of the weights in final/ (the best ones seen).'),
    bestValidationLoss: z.number().describe('Of the weights in final/ (at a pause, possibly the rung evaluation).'),
    bestStep: count.describe('Of the weights in final/ (at a pause, possibly the rung).'),
    lastValidationLoss: z.number().describe('Of the last weights, at `steps`.'),
    steps: count.describe('Optimizer steps done, over every resume.'),
    totalSteps: count.describe('The budget the schedule spans.'),
    pausedAtStep: count.nullable().describe('The rung this run paused at (stopAtStep); null when it ran its budget or stopped early.'),
    stoppedEarly: z.union([z.literal(0), z.literal(1)]).describe('1 when early stopping ended the run.'),
    trainRows: count,
    validationRows: count,
    trainableParameters: count,
    trainTokens: count.describe('Non-padding tokens seen by optimizer steps.'),
    trainSeconds: seconds.describe('Time in optimizer steps, over every resume.'),
    tokensPerSecond: z.number().nullable(),
    wallSeconds: seconds.describe('This process, loading included.'),
    peakMemoryBytes: count.describe("CUDA: the most memory torch allocated on the device; CPU: the process's peak resident set size."),
    processes: count
      .default(1)
      .describe('Processes that trained the last stretch of the run (training.distributed.processes); one process gets the same result.'),
  })
  .describe('Training metrics (`final/metrics.json` and the `done` event of `engine train`).');
export type TrainMetrics = z.infer<typeof TrainMetrics>;

/** `train`: `final/history.json`, the training curve. */
export const TrainingHistory = z
  .strictObject({
    steps: z.array(
      z.strictObject({
        step: count,
        loss: z.number(),
        learningRate: z.number(),
        tokensPerSecond: z.number(),
        tokens: count,
        seconds,
      }),
    ),
    evals: z.array(z.strictObject({ step: count, validationLoss: z.number(), rung: z.boolean().optional() })),
  })
  .describe('Every optimizer step and validation loss of a training run (`final/history.json`).');
export type TrainingHistory = z.infer<typeof TrainingHistory>;

/** `prompt_format.json` beside every trained artifact and export: how a question becomes a prompt. */
export const PromptFormat = z
  .strictObject({
    kind: z
      .enum(['chat_template', 'plain', 'seq2seq'])
      .describe(
        "`chat_template`: the model's own; `plain`: question, separator, answer, eos; `seq2seq` (encoder-decoder): the plain text without a separator goes to the encoder with the tokenizer's special tokens, the answer and eos come from the decoder.",
      ),
    systemPrompt: z.string().nullable(),
    separator: z.string().nullable().describe('plain: the special token between question and answer; null otherwise.'),
    endOfTurn: z.string().nullable().describe('Text that closes an answer; generation stops at it.'),
    grounding: z
      .strictObject({
        template: z.string().describe('The question with its known pairs: `{pairs}` and `{question}`.'),
        pairTemplate: z.string().describe('One known pair: `{question}` and `{answer}`.'),
        pairSeparator: z.string(),
      })
      .nullable()
      .describe('How known Q&A pairs are put into a question (grounding); filled in one pass, so braces in the text stay.'),
  })
  .describe('How the engine renders a prompt (`prompt_format.json`).');
export type PromptFormat = z.infer<typeof PromptFormat>;

const TensorSpec = z.strictObject({ name: z.string(), shape: z.array(z.union([z.string(), z.number().int()])) });

export const Quantization = z
  .enum(['none', 'int8', 'int4'])
  .describe('`none`: float32 weights; `int8`, `int4`: quantized by ONNX Runtime.');
export type Quantization = z.infer<typeof Quantization>;

/** A quantized export's quality against its float32 export (engine/quantize.py). */
export const ExportQuality = z
  .strictObject({
    quantization: Quantization.exclude(['none']),
    prompts: z.number().int().positive().describe('Questions greedy-decoded by both graphs.'),
    questions: z
      .array(z.string())
      .describe('Those questions, asked without known pairs: the first validation rows, or the parity questions.'),
    maxNewTokens: z.number().int().positive(),
    identicalTokens: count.describe("float32's greedy tokens the quantized graph reproduced before its first different token."),
    comparedTokens: count.describe("float32's greedy tokens, each answer's end token included (every end token counts as one)."),
    tokenAgreement: z.number().min(0).max(1).describe('identicalTokens / comparedTokens.'),
    perplexityText: z
      .enum(['validation', 'general-english'])
      .describe('The validation answers, or assets/general-english.txt without rows.'),
    perplexityTokens: count,
    fp32Perplexity: z.number().positive(),
    quantizedPerplexity: z.number().positive(),
    perplexityIncrease: z.number().describe('quantizedPerplexity / fp32Perplexity - 1.'),
    limits: z.strictObject({ minTokenAgreement: z.number(), maxPerplexityIncrease: z.number() }),
    seconds: seconds,
    fp32Bytes: count.describe('The float32 graph, which the folder no longer holds.'),
  })
  .describe('A quantized export passed these limits; one that did not was removed.');
export type ExportQuality = z.infer<typeof ExportQuality>;

/** `export.json`: the manifest of an ONNX export. */
export const ExportManifest = z
  .strictObject({
    format: z.literal('onnx'),
    file: z.string().describe('The ONNX graph the decode loop steps: `model.onnx`, or `decoder_model.onnx` for encoder-decoder.'),
    externalData: z.string().nullable(),
    opset: z.number().int(),
    dtype: z
      .enum(['float32', 'int8', 'int4'])
      .describe('The weights of `file`; int8 and int4 are quantized from the float32 export, whose parity was checked.'),
    quality: ExportQuality.nullable()
      .default(null)
      .describe('Quantized exports: agreement and perplexity against float32; null for float32.'),
    source: z.string().describe('The model folder that was exported.'),
    mergedAdapter: z.boolean(),
    modelType: z.string(),
    architecture: z
      .enum(['decoder-only', 'encoder-decoder'])
      .default('decoder-only')
      .describe('`encoder-decoder` (T5, BART): `encoderFile` runs once per prompt, `file` is the decoder stepped one token at a time.'),
    numLayers: z.number().int().positive().describe("The decoder's layers (each has a KV cache)."),
    numKeyValueHeads: z.number().int().positive().describe("The decoder's."),
    headDim: z.number().int().positive().describe("The decoder's."),
    vocabSize: z.number().int().positive(),
    inputs: z.array(TensorSpec).describe('Of `file` (the decoder graph for encoder-decoder).'),
    outputs: z.array(TensorSpec).describe('Of `file` (the decoder graph for encoder-decoder).'),
    encoderFile: z.string().nullable().default(null).describe('Encoder-decoder: the encoder graph (`encoder_model.onnx`); null otherwise.'),
    decoderStartTokenId: z
      .number()
      .int()
      .nullable()
      .default(null)
      .describe('Encoder-decoder: the token every answer starts the decoder with (T5: pad, BART: eos); null otherwise.'),
    encoderInputs: z.array(TensorSpec).nullable().default(null).describe('Encoder-decoder: the inputs of `encoderFile`; null otherwise.'),
    encoderOutputs: z.array(TensorSpec).nullable().default(null).describe('Encoder-decoder: the outputs of `encoderFile`; null otherwise.'),
    eosTokenIds: z.array(z.number().int()).min(1),
    parity: z.strictObject({
      prompts: z.number().int().positive(),
      identical: z.literal(true).describe('An export is written only when ONNX Runtime and PyTorch agree (for the float32 graph).'),
      tokens: count,
      maxNewTokens: z.number().int().positive(),
    }),
    onnxBytes: count,
    versions: z.record(z.string(), z.string()),
  })
  .describe('The manifest of an ONNX export (`export.json`).');
export type ExportManifest = z.infer<typeof ExportManifest>;

/** `export`: the `done` event's metrics. */
export const ExportMetrics = z.strictObject({
  parityPrompts: z.number().int().positive(),
  parityTokens: count,
  paritySeconds: seconds,
  exportSeconds: seconds,
  onnxBytes: count,
  weightBits: z
    .union([z.literal(32), z.literal(8), z.literal(4)])
    .default(32)
    .describe('32: float32; 8: int8; 4: int4 (`export.quantize`). A number, as every metric of an engine event is.'),
  tokenAgreement: z.number().min(0).max(1).nullable().default(null).describe("Quantized: share of float32's greedy tokens reproduced."),
  perplexityIncrease: z.number().nullable().default(null).describe('Quantized: relative perplexity change against float32.'),
});
export type ExportMetrics = z.infer<typeof ExportMetrics>;

/** `retrieve`: the `done` event's metrics. */
export const RetrievalMetrics = z.strictObject({
  rows: count,
  indexRows: count.describe('Training rows in the index (the seeded draw training used).'),
  similarityMean: z.number().min(0).max(1),
});
export type RetrievalMetrics = z.infer<typeof RetrievalMetrics>;

/** `perplexity`: the `done` event's metrics. */
export const PerplexityMetrics = z.strictObject({
  perplexity: z.number().positive(),
  tokens: z.number().int().positive().describe('Tokens predicted.'),
});
export type PerplexityMetrics = z.infer<typeof PerplexityMetrics>;

/** One row every system answers: a question and what its answer is scored against. */
export const EvaluationRow = z.strictObject({
  id: z.string(),
  question: z.string(),
  reference: z.string(),
  fact: z.string().nullable(),
  category: z.string().nullable(),
  product: z.string().nullable().describe('The product the question is asked about, when the data names one.'),
});
export type EvaluationRow = z.infer<typeof EvaluationRow>;

/** A known question-answer pair put into a prompt (grounding): a training row. */
export const KnownPair = z.strictObject({
  id: z.string(),
  question: z.string(),
  answer: z.string(),
  similarity: z
    .number()
    .min(-1)
    .max(1)
    .describe("The retriever's score for this pair: cosine similarity, or Jaccard for lexical retrieval."),
});
export type KnownPair = z.infer<typeof KnownPair>;

/** A line of a contexts file: the known pairs a row's prompt carries, most similar first. */
export const ContextRow = z
  .strictObject({ id: z.string(), context: z.array(KnownPair) })
  .describe('The known pairs of one row (a line of a contexts file, which training and the grounded systems read).');
export type ContextRow = z.infer<typeof ContextRow>;

/** One system's answer to one evaluation row: a line of an answers file, as `engine score` reads it. */
export const Prediction = EvaluationRow.extend({
  system: SystemName,
  prediction: z.string(),
  newTokens: count.optional().describe('Generated systems: tokens generated, without the one that ended the turn.'),
  retrievedQuestion: z.string().optional().describe('Retrieval: the training question whose answer was returned.'),
  similarity: z.number().min(-1).max(1).optional().describe("Retrieval: that question's similarity to this one."),
  contextIds: z
    .array(z.string())
    .optional()
    .describe('Grounded systems: the ids of the known pairs the prompt carried, most similar first.'),
}).describe('One answer of one system (a line of an answers file).');
export type Prediction = z.infer<typeof Prediction>;

const nullableScore = z.number().nullable();
/** The metrics `engine score` computes for a system, overall and per category. */
export const ScoreMetrics = z.strictObject({
  bleu: nullableScore.describe('sacrebleu corpus BLEU, 0-100.'),
  chrf: nullableScore.describe('sacrebleu corpus chrF, 0-100.'),
  rouge1: nullableScore,
  rouge2: nullableScore,
  rougeL: nullableScore.describe('rouge-score F1 with stemming, mean over rows, 0-1.'),
  factualAccuracy: nullableScore.describe('Share of rows with a fact whose prediction contains it; null without facts.'),
  factRows: count,
  semanticSimilarity: nullableScore.describe(
    'Mean cosine similarity of answer and reference all-MiniLM-L6-v2 embeddings, -1 to 1: meaning, not wording.',
  ),
  semanticMatch: nullableScore.describe('Share of rows whose semantic similarity is at least 0.6.'),
  questionEchoSimilarity: nullableScore.describe(
    'The semantic similarity the question itself would score as the answer (the same for every system): restating the question scores this much.',
  ),
  rougeLLengthMatched: nullableScore.describe(
    "ROUGE-L with every answer cut to at most the words of the served system's answer to the row (null when not asked for).",
  ),
  semanticSimilarityLengthMatched: nullableScore.describe(
    "Semantic similarity with every answer cut to at most the words of the served system's answer to the row (null when not asked for).",
  ),
  degeneration: nullableScore.describe(
    'Share of answers caught in a repetition loop (a word 3-gram 3 or more times, or a sentence twice; see `normalisation`), 0-1, lower is better.',
  ),
  distinct2: nullableScore.describe(
    'Distinct word bigrams over all word bigrams of the answers (corpus level), 0-1, higher is more varied; null when no answer has two words.',
  ),
  predictionWordsMean: nullableScore,
  predictionWordsMedian: nullableScore,
  predictionWordsP90: nullableScore,
  referenceWordsMean: nullableScore,
  referenceWordsMedian: nullableScore,
  referenceWordsP90: nullableScore,
});
export type ScoreMetrics = z.infer<typeof ScoreMetrics>;

const SystemScores = z.strictObject({
  rows: count,
  metrics: ScoreMetrics,
  byCategory: z.record(z.string(), z.strictObject({ rows: count, metrics: ScoreMetrics })),
});

/** `engine score`: the score report (`scores.json`). */
export const ScoreReport = z
  .strictObject({
    systems: z.partialRecord(SystemName, SystemScores),
    normalisation: z.string().describe('How factual accuracy and lengths are computed, in words.'),
    libraries: z.record(z.string(), z.string()),
  })
  .describe('Scores of every system on the same rows, overall and per category (`scores.json`).');
export type ScoreReport = z.infer<typeof ScoreReport>;
