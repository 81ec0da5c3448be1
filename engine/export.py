"""Export a trained artifact to ONNX with a KV cache, and prove it generates what PyTorch does.

The layout is the one optimum and transformers.js use for decoder-only models, so a JavaScript
runtime can drive generation: one `model.onnx` taking `input_ids`, `attention_mask`,
`position_ids` and `past_key_values.{i}.key/value`, returning `logits` and `present.{i}.key/value`.
Beside it lie the tokenizer, chat template, prompt format, generation and model config, and
`export.json`, the manifest. Encoder-decoder models (T5, FLAN-T5, BART) get two graphs instead,
`encoder_model.onnx` and `decoder_model.onnx` (engine/export_seq2seq.py). The parity check
greedy-decodes a few prompts with PyTorch and with ONNX Runtime (our own loop over the KV cache, as a
JS runtime would run it); any different token fails the export and leaves no output folder.
"""

import json
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.events import EXIT_PARITY, ConfigError, DataError, Emit, UserError, log
from engine.prompts import PROMPT_FORMAT_FILE, PromptEncoder, PromptFormat

OPSET = 17
ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = "model.onnx_data"  # only for models over protobuf's 2 GB limit
MANIFEST_FILE = "export.json"
PARITY_NEW_TOKENS = 16
DEFAULT_MAX_NEW_TOKENS = 256  # generation_config.json default for the runtime
PROTOBUF_LIMIT_BYTES = 2 * 1024**3
# A quantized export's quality limits against float32 (config `export:`; engine/quantize.py measures them).
DEFAULT_MIN_AGREEMENT = 0.0  # recorded, not enforced: see export.minTokenAgreement in schemas/config.ts
DEFAULT_MAX_PERPLEXITY_INCREASE = 0.1
# Customer-support questions for the parity check; cycled (numbered) when more prompts are asked for.
PARITY_QUESTIONS = [
    "How do I reset my router?",
    "How long is the warranty on the headphones?",
    "Can I return the smart watch?",
    "Why won't my e-reader turn on?",
    "Does the webcam work with a laptop?",
    "How do I pair the speaker with my phone?",
]


class ParityError(UserError):
    """ONNX Runtime generated other tokens than PyTorch: the export is wrong, so it is removed.

    Deterministic, so a retry would fail the same way: its own kind and exit code, never retried.
    """

    kind = "parity"
    exit_code = EXIT_PARITY


@dataclass
class ExportResult:
    output_dir: Path
    metrics: dict


def check_model_folder(model_dir: str) -> Path:
    """A trained artifact (`<outputDir>/final`) or a Hugging Face model folder; checked before torch loads."""
    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"--model {folder}: folder does not exist")
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise ConfigError(
            f"--model {folder}: has neither config.json nor adapter_config.json; "
            "pass a trained artifact (<outputDir>/final) or a Hugging Face model folder"
        )
    for name in ("config.json", "adapter_config.json", PROMPT_FORMAT_FILE, "train_config.json"):
        if (folder / name).is_file():
            try:
                json.loads((folder / name).read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ConfigError(f"--model {folder / name}: not readable JSON ({error})") from None
    return folder.resolve()


def check_output_folder(output_dir: str, model_dir: Path | None) -> Path:
    """An absent or empty folder, or an earlier export (replaced); never anything else we would delete.
    `model_dir` is None for a hub id, which has no folder here to protect."""
    folder = Path(output_dir).expanduser().resolve()
    if model_dir is not None and (folder == model_dir or folder in model_dir.parents):
        raise ConfigError(f"--output {folder}: is or holds the model folder {model_dir}; choose another folder")
    if folder.exists():
        if not folder.is_dir():
            raise ConfigError(f"--output {folder}: exists and is not a folder")
        if any(folder.iterdir()) and not (folder / MANIFEST_FILE).is_file():
            raise ConfigError(f"--output {folder}: exists, is not empty and is not an earlier export; choose another folder")
    return folder


def load_for_export(source: Path | str, system_prompt: str | None = None):
    """(model, tokenizer, prompt format): the LoRA adapter merged into the base weights, float32, eval.

    A trained artifact brings its own prompt format. An untuned base model (a folder or a hub id) is
    prompted as training would prompt it, with `system_prompt`, so the baseline is asked exactly as the
    tuned model is: through its chat template, or in the plain format, whose separator token gets an
    embedding row (the mean of the others, as training starts it).
    """
    from safetensors import SafetensorError

    from engine.models import add_token_rows, is_encoder_decoder, load_base_model, load_finetuned

    trained = isinstance(source, Path) and (source / PROMPT_FORMAT_FILE).is_file()
    if trained and system_prompt is not None:
        raise ConfigError(
            f"--system-prompt: {source} is a trained artifact, whose prompt format already fixes the system prompt; "
            "drop --system-prompt (it is for base model folders)"
        )
    try:
        if trained:
            model, tokenizer, prompt_format = load_finetuned(str(source))
        else:
            model, tokenizer, _ = load_base_model(str(source))
            prompt_format = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt, is_encoder_decoder(model.config)).format
            add_token_rows(model, tokenizer)
    except (OSError, ValueError, KeyError, SafetensorError) as error:  # missing or corrupt weights, bad configs
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"--model {source}: cannot load the model ({type(error).__name__}: {first_line})") from None
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model = model.float().eval()
    model.config.use_cache = True
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, prompt_format


def cache_shape(config) -> dict:
    """Layers, key/value heads and head size of the decoder: the shapes of past_key_values."""
    text = config.get_text_config(decoder=True)
    heads = text.num_attention_heads
    return {
        "numLayers": text.num_hidden_layers,
        "numKeyValueHeads": getattr(text, "num_key_value_heads", None) or heads,
        "headDim": getattr(text, "head_dim", None) or text.hidden_size // heads,
        "vocabSize": text.vocab_size,
    }


def io_names(num_layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]
    present = [f"present.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", *past], ["logits", *present]


def io_shapes(num_layers: int, shape: dict) -> tuple[dict, dict]:
    """Symbolic shapes of every input and output, as the manifest records them."""
    past = ["batch_size", shape["numKeyValueHeads"], "past_sequence_length", shape["headDim"]]
    present = ["batch_size", shape["numKeyValueHeads"], "total_sequence_length", shape["headDim"]]
    inputs, outputs = io_names(num_layers)
    input_shapes = {
        "input_ids": ["batch_size", "sequence_length"],
        "attention_mask": ["batch_size", "total_sequence_length"],
        "position_ids": ["batch_size", "sequence_length"],
    }
    input_shapes.update({name: past for name in inputs[3:]})
    output_shapes = {"logits": ["batch_size", "sequence_length", shape["vocabSize"]]}
    output_shapes.update({name: present for name in outputs[1:]})
    return input_shapes, output_shapes


def flat_cache_decoder(model):
    """The model as a function of flat tensors: ONNX has no Cache objects, only named inputs."""
    import torch
    from transformers import DynamicCache

    class FlatCacheDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):
            # transformers 5 takes the cache as `cache=` (was `past_key_values=`) and grows it in place.
            cache = DynamicCache(list(zip(past[0::2], past[1::2])), config=self.model.config)
            outputs = self.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True
            )
            presents = [tensor for layer in cache.layers for tensor in (layer.keys, layer.values)]
            return (outputs.logits, *presents)

    # eval(): the exporter restores the wrapper's mode afterwards, and a new Module is in training
    # mode, which would switch the model's dropout on for the parity check (GPT-2 has 0.1).
    return FlatCacheDecoder().eval()


@contextmanager
def replacing_folder(output: Path):
    """A fresh hidden folder beside `output` to build an export in; when the block completes it replaces
    `output` (an earlier export or an empty folder, as the output checks allow), and it is removed if the
    block fails, so `output` is never left half written."""
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.parent / f".tmp-{output.name}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        yield temporary
        if output.exists():
            shutil.rmtree(output)
        os.rename(temporary, output)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


@contextmanager
def tracer_warnings_silenced():
    """The TorchScript exporter's warnings about Python values in the trace (the parity check is what
    proves the graph right) and about indexing a padding mask with aranges (never negative) in attention masks."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
        yield


def export_onnx(model, destination: Path, shape: dict) -> None:
    """Trace with a past of 2 tokens and a new chunk of 3, so neither length is baked in as a constant."""
    import torch

    input_names, output_names = io_names(shape["numLayers"])
    batch, past_length, new_length = 2, 2, 3
    past = torch.randn(batch, shape["numKeyValueHeads"], past_length, shape["headDim"])
    dummy = (
        torch.randint(0, shape["vocabSize"], (batch, new_length)),
        torch.ones(batch, past_length + new_length, dtype=torch.long),
        torch.arange(past_length, past_length + new_length).repeat(batch, 1),
        *[past.clone() for _ in range(2 * shape["numLayers"])],
    )
    dynamic_axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    dynamic_axes.update({name: {0: "batch_size", 2: "past_sequence_length"} for name in input_names[3:]})
    dynamic_axes.update({name: {0: "batch_size", 2: "total_sequence_length"} for name in output_names[1:]})
    with torch.no_grad(), tracer_warnings_silenced():
        torch.onnx.export(
            flat_cache_decoder(model),
            dummy,
            str(destination / ONNX_FILE),
            dynamo=False,  # the TorchScript exporter; the dynamo one also needs onnxscript
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            # No constant folding: it would store the tied lm_head as a second, transposed copy of the
            # embeddings (+113 MB for SmolLM2-135M); ONNX Runtime folds it in memory when the session loads.
            do_constant_folding=False,
        )
    assert not model.training, "the exporter left dropout on"
    gather_external_data(destination)


def gather_external_data(destination: Path, onnx_file: str = ONNX_FILE, data_file: str = ONNX_DATA_FILE) -> None:
    """Over 2 GB the TorchScript exporter writes one file per tensor; keep one `model.onnx_data` instead.
    `destination` holds only the graph just exported."""
    import onnx

    extra = [path for path in destination.iterdir() if path.name != onnx_file]
    if not extra:
        return
    model = onnx.load(str(destination / onnx_file))  # reads the external tensors into memory
    for path in extra:
        path.unlink()
    onnx.save_model(model, str(destination / onnx_file), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=data_file)


def onnx_session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = min(4, os.cpu_count() or 1)
    options.log_severity_level = 3  # errors only: ORT warns about unused initializers of tied weights
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def empty_past(shape: dict, batch: int = 1) -> dict:
    import numpy as np

    empty = np.zeros((batch, shape["numKeyValueHeads"], 0, shape["headDim"]), dtype=np.float32)
    return {name: empty for name in io_names(shape["numLayers"])[0][3:]}


def onnx_greedy(session, prompt_ids: list[int], shape: dict, max_new_tokens: int, eos_ids: set[int]) -> list[int]:
    """Greedy decoding as a JS runtime does it: the whole prompt with an empty past, then one token at a time."""
    import numpy as np

    input_names, output_names = io_names(shape["numLayers"])
    feed = {"input_ids": np.array([prompt_ids], dtype=np.int64), **empty_past(shape)}
    past_length, generated = 0, []
    while len(generated) < max_new_tokens:
        new_length = feed["input_ids"].shape[1]
        feed["attention_mask"] = np.ones((1, past_length + new_length), dtype=np.int64)
        feed["position_ids"] = np.arange(past_length, past_length + new_length, dtype=np.int64)[None, :]
        logits, *presents = session.run(None, feed)
        token = int(logits[0, -1].argmax())
        generated.append(token)
        if token in eos_ids:
            break
        past_length += new_length
        feed = {"input_ids": np.array([[token]], dtype=np.int64), **dict(zip(input_names[3:], presents))}
    return generated


@contextmanager
def plain_generation_defaults(model):
    """generate() fills every setting left unset in the config it is given from the model's own
    generation_config (BART's forced_bos_token_id, a no_repeat_ngram_size or repetition_penalty from
    generation_config.json); the ONNX loop applies no logits processors, so plain greedy must be compared."""
    from transformers import GenerationConfig

    saved = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = saved


def torch_greedy(model, prompt_ids: list[int], max_new_tokens: int, eos_ids: list[int], pad_id: int) -> list[int]:
    """PyTorch's greedy tokens after the prompt, up to and including eos. For an encoder-decoder model the
    prompt ids are the encoder's, and the tokens those the decoder generated after its start token."""
    import torch
    from transformers import GenerationConfig

    from engine.models import decoder_start_token_id, is_encoder_decoder

    encoder_decoder = is_encoder_decoder(model.config)
    start = {"decoder_start_token_id": decoder_start_token_id(model)} if encoder_decoder else {}
    # A fresh config: a model's own generation_config.json may ask for sampling or a repetition penalty.
    settings = GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=eos_ids, pad_token_id=pad_id, **start
    )
    prompt = torch.tensor([prompt_ids])
    with torch.no_grad(), plain_generation_defaults(model):
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=settings)
    # A decoder-only output repeats the prompt; an encoder-decoder one starts with the decoder start token.
    tokens = output[0, 1 if encoder_decoder else len(prompt_ids) :].tolist()
    # generate pads a finished sequence only in a batch; keep everything up to and including eos.
    for position, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: position + 1]
    return tokens


def parity_questions(count: int) -> list[str]:
    return [
        PARITY_QUESTIONS[n % len(PARITY_QUESTIONS)] + (f" ({n // len(PARITY_QUESTIONS) + 1})" if n >= len(PARITY_QUESTIONS) else "")
        for n in range(count)
    ]


def check_parity(model, tokenizer, encoder: PromptEncoder, onnx_generate, prompts: int, eos_ids: list[int]) -> int:
    """Greedy tokens of PyTorch and ONNX Runtime (`onnx_generate(prompt_ids)`) must be identical; returns
    how many were compared."""
    compared = 0
    for number, question in enumerate(parity_questions(prompts), start=1):
        prompt_ids = encoder.prompt_ids(question)
        expected = torch_greedy(model, prompt_ids, PARITY_NEW_TOKENS, eos_ids, tokenizer.pad_token_id)
        actual = onnx_generate(prompt_ids)
        if expected != actual:
            position = next((n for n, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))
            def describe(tokens):
                return f"{tokens[position]} {tokenizer.decode([tokens[position]])!r}" if position < len(tokens) else "end"
            raise ParityError(
                f"parity: prompt {number} of {prompts} ({question!r}) differs at new token {position + 1}: "
                f"PyTorch {describe(expected)}, ONNX Runtime {describe(actual)}; the export was removed"
            )
        compared += len(expected)
    return compared


def end_token_ids(tokenizer, prompt_format: PromptFormat) -> list[int]:
    """Tokens that end an answer: eos, the format's end-of-turn token (`<|im_end|>`), if single tokens."""
    ids = [tokenizer.eos_token_id]
    vocab = tokenizer.get_vocab()
    for text in (prompt_format.endOfTurn, "<|im_end|>"):
        if text and text in vocab:
            ids.append(vocab[text])
    return sorted({token for token in ids if token is not None})


def write_beside(destination: Path, model, tokenizer, prompt_format: PromptFormat, eos_ids: list[int]) -> None:
    """Tokenizer, chat template, prompt format, generation and model config: all a runtime reads."""
    from transformers import GenerationConfig

    from engine.models import decoder_start_token_id, is_encoder_decoder

    tokenizer.save_pretrained(destination)
    if tokenizer.chat_template:
        # transformers 5 saves it as chat_template.jinja; older readers (transformers.js) look here.
        tokenizer_config = json.loads((destination / "tokenizer_config.json").read_text())
        tokenizer_config["chat_template"] = tokenizer.chat_template
        (destination / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")
    prompt_format.save(destination)
    model.config.save_pretrained(destination)
    start = {"decoder_start_token_id": decoder_start_token_id(model)} if is_encoder_decoder(model.config) else {}
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
        **start,
    ).save_pretrained(destination)


def graph_fields(encoder_decoder: bool, shape: dict, folder: Path, decoder_start_id: int | None, file: str = ONNX_FILE) -> dict:
    """The manifest's description of the graphs: files, architecture, inputs and outputs with their shapes."""
    from engine.export_seq2seq import DECODER_FILE, ENCODER_FILE, seq2seq_io_shapes

    def specs(shapes: dict) -> list[dict]:
        return [{"name": name, "shape": dims} for name, dims in shapes.items()]

    if encoder_decoder:
        encoder_inputs, encoder_outputs, inputs, outputs = seq2seq_io_shapes(shape)
        file, encoder_fields = DECODER_FILE, {
            "architecture": "encoder-decoder",
            "encoderFile": ENCODER_FILE,
            "decoderStartTokenId": decoder_start_id,
            "encoderInputs": specs(encoder_inputs),
            "encoderOutputs": specs(encoder_outputs),
        }
    else:
        inputs, outputs = io_shapes(shape["numLayers"], shape)
        encoder_fields = {
            "architecture": "decoder-only", "encoderFile": None, "decoderStartTokenId": None, "encoderInputs": None, "encoderOutputs": None,
        }
    return {
        "file": file,
        "externalData": f"{file}_data" if (folder / f"{file}_data").exists() else None,
        **encoder_fields,
        "inputs": specs(inputs),
        "outputs": specs(outputs),
    }


@dataclass
class Quantization:
    """`--quantize` and the quality limits of a quantized export (engine/quantize.py); `none`: float32."""

    kind: str = "none"
    quality_rows: str | None = None  # an Arrow split (the run's validation split) for the quality check
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_perplexity_increase: float = DEFAULT_MAX_PERPLEXITY_INCREASE


def export(
    model_dir: str,
    output_dir: str,
    parity_prompts: int,
    emit: Emit,
    system_prompt: str | None = None,
    quantization: Quantization | None = None,
) -> ExportResult:
    """Load, merge, export, write the files beside, check parity, quantize and check quality; `done`
    event; returns the metrics."""
    from engine import quantize
    from engine.models import is_hub_id

    quantization = quantization or Quantization()
    source = model_dir if is_hub_id(model_dir) else check_model_folder(model_dir)
    output = check_output_folder(output_dir, source if isinstance(source, Path) else None)
    if parity_prompts < 1:
        raise ConfigError(f"--parity-prompts: {parity_prompts}; must be at least 1")
    quantize.check_limits(quantization.kind, quantization.min_agreement, quantization.max_perplexity_increase)
    quality_rows = None
    if quantization.quality_rows is not None:
        from engine.data import read_split

        problems: list[str] = []
        quality_rows = read_split(quantization.quality_rows, "--quality-rows", problems)
        if problems:
            raise DataError("\n".join(problems))

    import onnxruntime
    import torch
    import transformers

    from engine import export_seq2seq
    from engine.models import decoder_start_token_id, is_encoder_decoder

    started = time.perf_counter()
    model, tokenizer, prompt_format = load_for_export(source, system_prompt)
    encoder_decoder = is_encoder_decoder(model.config)
    shape = export_seq2seq.seq2seq_cache_shape(model) if encoder_decoder else cache_shape(model.config)
    decoder_start_id = decoder_start_token_id(model) if encoder_decoder else None
    eos_ids = end_token_ids(tokenizer, prompt_format)
    if encoder_decoder and quantization.kind != "none":
        raise ConfigError(f"--quantize {quantization.kind}: encoder-decoder exports are float32 only for now; use --quantize none")

    with replacing_folder(output) as temporary:
        (temporary / "onnx").mkdir()
        architecture = "encoder and decoder" if encoder_decoder else "decoder-only"
        log(f"exporting {source} to ONNX (opset {OPSET}, float32, {architecture}, {shape['numLayers']} decoder layers)")
        if encoder_decoder:
            export_seq2seq.export_seq2seq_onnx(model, temporary / "onnx", shape)
        else:
            export_onnx(model, temporary / "onnx", shape)
        for path in (temporary / "onnx").iterdir():
            os.rename(path, temporary / path.name)
        (temporary / "onnx").rmdir()
        write_beside(temporary, model, tokenizer, prompt_format, eos_ids)
        export_seconds = time.perf_counter() - started
        onnx_bytes = sum(path.stat().st_size for path in temporary.glob("*.onnx*"))

        log(f"parity check: {parity_prompts} prompts, up to {PARITY_NEW_TOKENS} greedy tokens each, PyTorch vs ONNX Runtime")
        parity_started = time.perf_counter()
        new_tokens, ends = PARITY_NEW_TOKENS, set(eos_ids)
        if encoder_decoder:
            encoder_session = onnx_session(temporary / export_seq2seq.ENCODER_FILE)
            decoder_session = onnx_session(temporary / export_seq2seq.DECODER_FILE)

            def onnx_generate(prompt_ids):  # looked up when called, so a test can swap in a broken loop
                return export_seq2seq.onnx_seq2seq_greedy(
                    encoder_session, decoder_session, prompt_ids, shape, new_tokens, ends, decoder_start_id, tokenizer.pad_token_id
                )
        else:
            session = onnx_session(temporary / ONNX_FILE)

            def onnx_generate(prompt_ids):
                return onnx_greedy(session, prompt_ids, shape, new_tokens, ends)

        encoder = PromptEncoder(prompt_format, tokenizer)
        tokens = check_parity(model, tokenizer, encoder, onnx_generate, parity_prompts, eos_ids)
        parity_seconds = time.perf_counter() - parity_started

        graphs = graph_fields(encoder_decoder, shape, temporary, decoder_start_id)
        quality, fp32_bytes = None, onnx_bytes
        if quantization.kind != "none":
            quality_started = time.perf_counter()
            quantized_file = quantize.quantize_graph(temporary, ONNX_FILE, quantization.kind)
            quality = quantize.quality_check(
                temporary, ONNX_FILE, quantized_file, quantization.kind, tokenizer, encoder, shape, eos_ids, quality_rows,
                quantization.min_agreement, quantization.max_perplexity_increase,
            )
            quality["seconds"] = round(time.perf_counter() - quality_started, 3)
            quantize.remove_fp32_graph(temporary, ONNX_FILE)
            graphs = graph_fields(encoder_decoder, shape, temporary, decoder_start_id, file=quantized_file)
            onnx_bytes = sum(path.stat().st_size for path in temporary.glob("*.onnx*"))

        manifest = {
            "format": "onnx",
            **graphs,
            "opset": OPSET,
            "dtype": "float32" if quantization.kind == "none" else quantization.kind,
            "quality": quality and {**quality, "fp32Bytes": fp32_bytes},
            "source": str(source),
            "mergedAdapter": isinstance(source, Path) and (source / "adapter_config.json").is_file(),
            "modelType": model.config.model_type,
            **shape,
            "eosTokenIds": eos_ids,
            "parity": {"prompts": parity_prompts, "identical": True, "tokens": tokens, "maxNewTokens": PARITY_NEW_TOKENS},
            "onnxBytes": onnx_bytes,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__},
        }
        (temporary / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")

    metrics = {
        "parityPrompts": parity_prompts,
        "parityTokens": tokens,
        "paritySeconds": round(parity_seconds, 3),
        "exportSeconds": round(export_seconds, 3),
        "onnxBytes": onnx_bytes,
        "weightBits": {"none": 32, "int8": 8, "int4": 4}[quantization.kind],  # event metrics are numbers
        "tokenAgreement": quality["tokenAgreement"] if quality else None,
        "perplexityIncrease": quality["perplexityIncrease"] if quality else None,
    }
    log(f"exported to {output}: {onnx_bytes / 1e6:.1f} MB, {tokens} greedy tokens identical to PyTorch (float32)")
    emit({"event": "done", "step": 0, "outputDir": str(output), "metrics": metrics})
    return ExportResult(output, metrics)
