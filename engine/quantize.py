"""Quantized exports, made by ONNX Runtime's own tools, and the quality check that stands in for parity.

The float32 export (engine/export.py) is written and parity-checked against PyTorch as always; a
quantized graph is then made from it beside it and the manifest's `file` points to that one, so
what is evaluated and served is the quantized model:
- int8 (`model_int8.onnx`): dynamic quantization (`quantize_dynamic`): the MatMuls' weights (one scale
  per output column) and the embedding table stored as int8; activations are quantized on the fly,
  one scale per input. The MLP's down projection stays float32 (INT8_FLOAT_MATMULS says why).
- int4 (`model_int4.onnx`): 4-bit block-wise weights (32 weights per scale, symmetric) for the
  MatMuls (`MatMulNBitsQuantizer`, ONNX Runtime's MatMulNBits operator, which runs on CPU); the
  embedding stays float32.
The exporter traces without constant folding (the tied lm_head would be stored twice), so every
weight reaches its MatMul through a Transpose, which the quantizers do not look through: a Transpose
of an initializer is folded into a transposed initializer first, in the quantized file only.

Quantized tokens cannot equal PyTorch's, so the quality check measures them against the float32
export instead, and the manifest records both figures:
- greedy agreement: the share of float32's greedy tokens (the end token included) that the quantized
  graph reproduces before its first different token, over the validation questions (or the parity
  questions when no rows are given);
- perplexity of the validation answers (prompt-formatted, the answer tokens and the end of the turn
  scored, as the validation loss scores them), or of general English text when no rows are given,
  with both graphs; its relative change is the figure.
A figure over its limit fails the export with a ParityError (exit 4; deterministic, never retried)
whose message starts with `quality:`.
"""

import math
import os
from pathlib import Path

from engine.events import ConfigError, DataError, log
from engine.export import ParityError, empty_past, onnx_greedy, onnx_session, parity_questions
from engine.prompts import IGNORE_INDEX

QUANTIZATIONS = ("none", "int8", "int4")
QUANTIZED_FILES = {"int8": "model_int8.onnx", "int4": "model_int4.onnx"}
# MatMuls int8 leaves in float32: the MLP's down projection, by its name in each family (Llama, Qwen and
# Mistral; GPT-2; OPT; GPT-NeoX). Its input, the gated activation, has a few channels far larger than the
# rest, and dynamic int8 gives the whole input one scale: on SmolLM2-135M quantizing it too doubled the
# validation perplexity (19.5 -> 37.2); without it, +5.8%.
INT8_FLOAT_MATMULS = ("down_proj", "mlp/c_proj", "fc2", "dense_4h_to_h")
INT4_BLOCK_SIZE = 32  # weights per scale: ONNX Runtime's MatMulNBits takes 16 to 256; 32 keeps most accuracy
AGREEMENT_PROMPTS = 8
AGREEMENT_NEW_TOKENS = 32
PERPLEXITY_ROWS = 32
PERPLEXITY_MAX_TOKENS = 256  # per row or window; keeps the check to seconds on a CPU
GENERAL_TEXT = Path(__file__).resolve().parent.parent / "assets" / "general-english.txt"
END = -1  # every end token counts as the same token: an answer that ends, ends


def check_limits(quantize: str, min_agreement: float, max_perplexity_increase: float) -> None:
    """Before any model loads: a wrong setting comes back in a second."""
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize {quantize}: must be one of {', '.join(QUANTIZATIONS)}")
    if not 0 <= min_agreement <= 1:
        raise ConfigError(f"--min-token-agreement {min_agreement}: must be a share from 0 to 1")
    if not max_perplexity_increase >= 0:
        raise ConfigError(f"--max-perplexity-increase {max_perplexity_increase}: must be 0 or more (0.05 is 5%)")


def fold_weight_transposes(model) -> int:
    """Replace each Transpose of an initializer by the transposed initializer (named as the Transpose's
    output, so its consumers need no change); drop initializers nothing reads any more. Returns how many."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    kept, folded = [], []
    for node in graph.node:
        if node.op_type == "Transpose" and node.input[0] in initializers:
            perm = next((list(attribute.ints) for attribute in node.attribute if attribute.name == "perm"), None)
            array = np.ascontiguousarray(np.transpose(numpy_helper.to_array(initializers[node.input[0]]), perm))
            folded.append(numpy_helper.from_array(array, node.output[0]))
        else:
            kept.append(node)
    if not folded:
        return 0
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(folded)
    read = names_read(graph)
    unused = [tensor for tensor in graph.initializer if tensor.name not in read]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return len(folded)


def names_read(graph) -> set[str]:
    """Every value name a node reads, in the graph and its subgraphs (If, Loop), and the graph's outputs."""
    from onnx import AttributeProto

    read = {output.name for output in graph.output}
    for node in graph.node:
        read.update(node.input)
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                read |= names_read(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    read |= names_read(subgraph)
    return read


def quantize_graph(folder: Path, source_file: str, quantize: str) -> str:
    """Write the int8 or int4 graph of `folder/source_file` beside it; returns its file name."""
    import onnx

    import logging

    # The quantizers log every node they quantize (INFO) and advise a pre-processing pass meant for static
    # image-model quantization (a root WARNING); the engine's stderr is for what a user can act on.
    for logger in (logging.getLogger(), logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")):
        logger.setLevel(logging.ERROR)
    target = folder / QUANTIZED_FILES[quantize]
    model = onnx.load(str(folder / source_file))  # external data, if any, is read into memory
    folded = fold_weight_transposes(model)
    # A 4x (int8) or 8x (int4) smaller graph fits protobuf's 2 GB unless the float32 one was over 8 GB.
    external = model.ByteSize() > 4 * 2 * 1024**3 if quantize == "int8" else False
    log(f"quantizing {source_file} to {quantize} with ONNX Runtime ({folded} weight transposes folded first)")
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        kept_float = [node.name for node in model.graph.node if node.op_type == "MatMul" and any(part in node.name for part in INT8_FLOAT_MATMULS)]
        quantize_dynamic(
            model,
            str(target),
            op_types_to_quantize=["MatMul", "Gather"],
            per_channel=True,  # a scale per output column of each weight
            weight_type=QuantType.QInt8,
            nodes_to_exclude=kept_float,
            use_external_data_format=external,
            extra_options={"MatMulConstBOnly": True},  # activations x activations (attention) stay float32
        )
    else:
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        except ImportError as error:
            raise ConfigError(f"--quantize int4: ONNX Runtime's 4-bit quantizer cannot load ({error}); run scripts/setup.sh") from None
        quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=INT4_BLOCK_SIZE, is_symmetric=True, accuracy_level=4)
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return target.name


def ends_as_one(tokens: list[int], eos_ids: set[int]) -> list[int]:
    return [END if token in eos_ids else token for token in tokens]


def greedy_agreement(reference: list[list[int]], quantized: list[list[int]]) -> tuple[int, int]:
    """(tokens of `reference` reproduced before the first difference, tokens of `reference`), over all prompts."""
    same = 0
    for expected, actual in zip(reference, quantized, strict=True):
        for a, b in zip(expected, actual):
            if a != b:
                break
            same += 1
    return same, sum(len(tokens) for tokens in reference)


def scored_sequences(tokenizer, encoder, rows) -> list[tuple[list[int], int]]:
    """(token ids, index of the first scored token) per sequence: the validation rows prompt-formatted with
    their answers (prompt not scored), or windows of general English (all but the first token scored)."""
    if rows is not None:
        sequences = []
        for question, answer in zip(rows.questions[:PERPLEXITY_ROWS], rows.answers[:PERPLEXITY_ROWS]):
            example = encoder.encode(question, answer, PERPLEXITY_MAX_TOKENS)
            if example is not None:
                sequences.append((example.input_ids, example.labels.count(IGNORE_INDEX)))
        return sequences
    ids = tokenizer(GENERAL_TEXT.read_text(), add_special_tokens=False)["input_ids"]
    windows = [ids[start : start + PERPLEXITY_MAX_TOKENS] for start in range(0, len(ids), PERPLEXITY_MAX_TOKENS)]
    return [(window, 1) for window in windows[: PERPLEXITY_ROWS // 2] if len(window) > 1]


def onnx_perplexity(session, sequences: list[tuple[list[int], int]], shape: dict) -> float:
    """exp(mean negative log-likelihood of the scored tokens), each sequence in one run with an empty past."""
    import numpy as np

    total, counted = 0.0, 0
    for ids, first_scored in sequences:
        length = len(ids)
        feed = {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.ones((1, length), dtype=np.int64),
            "position_ids": np.arange(length, dtype=np.int64)[None, :],
            **empty_past(shape),
        }
        logits = session.run(["logits"], feed)[0][0].astype(np.float64)  # [length, vocab]
        predicting = logits[first_scored - 1 : length - 1]
        targets = np.array(ids[first_scored:])
        peak = predicting.max(axis=1)
        log_sums = peak + np.log(np.exp(predicting - peak[:, None]).sum(axis=1))
        total += float((log_sums - predicting[np.arange(len(targets)), targets]).sum())
        counted += len(targets)
    return math.exp(total / counted)


def quality_check(
    folder: Path,
    fp32_file: str,
    quantized_file: str,
    quantize: str,
    tokenizer,
    encoder,
    shape: dict,
    eos_ids: list[int],
    rows,
    min_agreement: float,
    max_perplexity_increase: float,
) -> dict:
    """The quantized graph against the float32 one: greedy agreement and perplexity change, checked
    against their limits; returns the manifest's `quality` record."""
    fp32_session = onnx_session(folder / fp32_file)
    quantized_session = onnx_session(folder / quantized_file)
    questions = list(rows.questions[:AGREEMENT_PROMPTS]) if rows is not None else parity_questions(AGREEMENT_PROMPTS)
    ends = set(eos_ids)
    reference, quantized = [], []
    for question in questions:
        prompt_ids = encoder.prompt_ids(question)
        reference.append(ends_as_one(onnx_greedy(fp32_session, prompt_ids, shape, AGREEMENT_NEW_TOKENS, ends), ends))
        quantized.append(ends_as_one(onnx_greedy(quantized_session, prompt_ids, shape, AGREEMENT_NEW_TOKENS, ends), ends))
    same, compared = greedy_agreement(reference, quantized)
    agreement = same / compared

    sequences = scored_sequences(tokenizer, encoder, rows)
    if not sequences:
        raise DataError(f"--quality-rows: every prompt of the first {PERPLEXITY_ROWS} rows is longer than {PERPLEXITY_MAX_TOKENS} tokens")
    fp32_perplexity = onnx_perplexity(fp32_session, sequences, shape)
    quantized_perplexity = onnx_perplexity(quantized_session, sequences, shape)
    increase = quantized_perplexity / fp32_perplexity - 1
    scored = sum(len(ids) - first for ids, first in sequences)
    text = "validation answers" if rows is not None else "general English"
    log(
        f"quality of {quantize}: {same}/{compared} greedy tokens as float32 ({agreement:.3f}); perplexity on {text} "
        f"{fp32_perplexity:.3f} -> {quantized_perplexity:.3f} ({increase:+.2%})"
    )
    problems = []
    if agreement < min_agreement:
        problems.append(
            f"greedy token agreement with float32 {agreement:.3f} ({same}/{compared} tokens over {len(questions)} prompts) "
            f"is below the limit export.minTokenAgreement {min_agreement}"
        )
    if increase > max_perplexity_increase:
        problems.append(
            f"perplexity on {text} rose {increase:.2%} ({fp32_perplexity:.3f} -> {quantized_perplexity:.3f}), "
            f"over the limit export.maxPerplexityIncrease {max_perplexity_increase} ({max_perplexity_increase:.0%})"
        )
    if problems:
        # A parity failure's kind (exit 4, never retried): the quality check is the parity check of a quantized export.
        raise ParityError(f"quality: the {quantize} export fails its limits: " + "; ".join(problems) + "; the export was removed")
    return {
        "quantization": quantize,
        "prompts": len(questions),
        "questions": questions,
        "maxNewTokens": AGREEMENT_NEW_TOKENS,
        "identicalTokens": same,
        "comparedTokens": compared,
        "tokenAgreement": agreement,
        "perplexityText": "validation" if rows is not None else "general-english",
        "perplexityTokens": scored,
        "fp32Perplexity": fp32_perplexity,
        "quantizedPerplexity": quantized_perplexity,
        "perplexityIncrease": increase,
        "limits": {"minTokenAgreement": min_agreement, "maxPerplexityIncrease": max_perplexity_increase},
    }


def remove_fp32_graph(folder: Path, fp32_file: str) -> None:
    """The served folder keeps only the graph it serves: the float32 one was the quality check's reference."""
    for path in (folder / fp32_file, folder / f"{fp32_file}_data"):
        if path.exists():
            os.remove(path)
