"""Quantized exports: ONNX Runtime's quantizers on the parity-checked float32 graph, and the quality check
against float32 that the manifest records and a limit can fail."""

import json

import onnx
import pytest

from engine.events import ConfigError
from engine.export import ONNX_FILE, Quantization, end_token_ids, export, onnx_greedy, onnx_session
from engine.prompts import PromptEncoder, PromptFormat
from engine.quantize import AGREEMENT_NEW_TOKENS, END, fold_weight_transposes, greedy_agreement

from .conftest import assert_engine_event, assert_matches_schema, read_json, run_engine


@pytest.fixture(scope="module")
def wide_llama_dir(tmp_path_factory, smollm2_tokenizer):
    """Wider random weights than the tiny model's init, so that greedy answers vary (see tiny_models.py)."""
    from engine.tests.tiny_models import build_wide_llama

    return build_wide_llama(tmp_path_factory.mktemp("wide-llama"), smollm2_tokenizer)


@pytest.fixture(scope="module")
def fp32_export(wide_llama_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("fp32") / "onnx"
    code, _, stderr = run_engine("export", "--model", wide_llama_dir, "--output", output, "--parity-prompts", "1")
    assert code == 0, stderr
    return output


@pytest.fixture(scope="module")
def int8_export(wide_llama_dir, splits, tmp_path_factory):
    """`python -m engine export --quantize int8` as the activity runs it, checked on the validation split.
    Limits that a random model passes: its figures are what the tests look at."""
    output = tmp_path_factory.mktemp("int8") / "onnx"
    code, events, stderr = run_engine(
        "export", "--model", wide_llama_dir, "--output", output, "--parity-prompts", "1", "--quantize", "int8",
        "--quality-rows", splits["validation"], "--min-token-agreement", "0", "--max-perplexity-increase", "10",
    )
    assert code == 0, stderr
    return output, events


def test_transposes_of_weights_fold_into_transposed_initializers(fp32_export):
    model = onnx.load(str(fp32_export / ONNX_FILE))
    initializers = {tensor.name for tensor in model.graph.initializer}
    weight_transposes = [n for n in model.graph.node if n.op_type == "Transpose" and n.input[0] in initializers]
    assert weight_transposes, "the float32 export stores weights untransposed (no constant folding)"
    folded = fold_weight_transposes(model)
    assert folded == len(weight_transposes)
    remaining = {tensor.name for tensor in model.graph.initializer}
    assert not [n for n in model.graph.node if n.op_type == "Transpose" and n.input[0] in remaining]
    # Every MatMul with a weight now reads an initializer directly, which the quantizer can see.
    assert {n.output[0] for n in weight_transposes} <= remaining
    onnx.checker.check_model(model)


def test_int8_export_serves_the_quantized_graph_and_records_its_quality(int8_export, fp32_export):
    output, events = int8_export
    files = sorted(path.name for path in output.iterdir())
    assert "model_int8.onnx" in files and "model.onnx" not in files
    manifest = read_json(output / "export.json")
    assert_matches_schema(manifest, "export-manifest")
    assert manifest["file"] == "model_int8.onnx" and manifest["dtype"] == "int8" and manifest["externalData"] is None
    quality = manifest["quality"]
    assert quality["quantization"] == "int8" and quality["perplexityText"] == "validation"
    assert quality["prompts"] == 6  # the validation split's 6 questions (at most 8)
    assert quality["tokenAgreement"] == quality["identicalTokens"] / quality["comparedTokens"]
    assert quality["perplexityIncrease"] == pytest.approx(quality["quantizedPerplexity"] / quality["fp32Perplexity"] - 1)
    assert quality["limits"] == {"minTokenAgreement": 0.0, "maxPerplexityIncrease": 10.0}
    # The tiny model is mostly its tied embedding table, stored once in float32 and twice in int8 (the
    # Gather's rows and the lm_head's transposed copy): about half the bytes.
    assert manifest["onnxBytes"] < 0.6 * quality["fp32Bytes"]
    assert quality["fp32Bytes"] == read_json(fp32_export / "export.json")["onnxBytes"]
    done = events[-1]
    assert_engine_event(done)
    assert done["event"] == "done" and done["metrics"]["weightBits"] == 8
    assert done["metrics"]["tokenAgreement"] == quality["tokenAgreement"]


def test_recorded_agreement_is_what_the_two_graphs_generate(int8_export, fp32_export, splits):
    """Recompute the agreement from the two folders: the float32 export and the int8 one, greedy, 32 tokens."""
    from transformers import AutoTokenizer

    from engine.data import read_split

    output, _ = int8_export
    manifest = read_json(output / "export.json")
    tokenizer = AutoTokenizer.from_pretrained(output)
    prompt_format = PromptFormat(**json.loads((output / "prompt_format.json").read_text()))
    encoder = PromptEncoder(prompt_format, tokenizer)
    ends = set(end_token_ids(tokenizer, prompt_format))
    shape = {key: manifest[key] for key in ("numLayers", "numKeyValueHeads", "headDim", "vocabSize")}
    fp32, int8 = onnx_session(fp32_export / "model.onnx"), onnx_session(output / "model_int8.onnx")
    questions = read_split(splits["validation"], "validation", []).questions
    as_ends = lambda tokens: [END if t in ends else t for t in tokens]  # noqa: E731
    reference, quantized = [], []
    for question in questions:
        ids = encoder.prompt_ids(question)
        reference.append(as_ends(onnx_greedy(fp32, ids, shape, AGREEMENT_NEW_TOKENS, ends)))
        quantized.append(as_ends(onnx_greedy(int8, ids, shape, AGREEMENT_NEW_TOKENS, ends)))
    same, compared = greedy_agreement(reference, quantized)
    assert (same, compared) == (manifest["quality"]["identicalTokens"], manifest["quality"]["comparedTokens"])
    assert len({token for tokens in reference for token in tokens}) > 3  # the fixture is not degenerate


def test_int4_export_serves_4_bit_blocks_and_records_its_quality(wide_llama_dir, tmp_path):
    output = tmp_path / "onnx"
    code, events, stderr = run_engine(
        "export", "--model", wide_llama_dir, "--output", output, "--parity-prompts", "1", "--quantize", "int4",
        "--min-token-agreement", "0", "--max-perplexity-increase", "10",
    )
    assert code == 0, stderr
    assert "start to quantize" not in stderr  # the quantizer's per-node INFO lines are silenced
    manifest = read_json(output / "export.json")
    assert_matches_schema(manifest, "export-manifest")
    assert (manifest["file"], manifest["dtype"], manifest["quality"]["quantization"]) == ("model_int4.onnx", "int4", "int4")
    assert manifest["quality"]["perplexityText"] == "general-english" and manifest["quality"]["prompts"] == 8
    graph = onnx.load(str(output / "model_int4.onnx")).graph
    blocks = [node for node in graph.node if node.op_type == "MatMulNBits"]
    # 7 projections in each of the 2 layers, and the lm_head: no MatMul with a weight is left in float32.
    assert len(blocks) == 15
    attributes = {a.name: a.i for a in blocks[0].attribute}
    assert (attributes["bits"], attributes["block_size"]) == (4, 32)
    assert events[-1]["metrics"]["weightBits"] == 4


def test_agreement_counts_tokens_before_the_first_difference():
    assert greedy_agreement([[1, 2, 3, END], [5, 6]], [[1, 2, 9, END], [5, 6]]) == (4, 6)
    assert greedy_agreement([[1, 2]], [[1, 2, 3]]) == (2, 2)
    assert greedy_agreement([[1, 2, 3]], [[1, END]]) == (1, 3)


def test_a_limit_the_quantized_export_cannot_meet_fails_naming_the_figure_and_the_limit(int8_export, wide_llama_dir, splits, tmp_path):
    """The same export with a limit just past its own recorded figure (the export is deterministic)."""
    quality = read_json(int8_export[0] / "export.json")["quality"]
    increase, agreement = quality["perplexityIncrease"], quality["tokenAgreement"]
    assert increase > 0 or agreement < 1, "int8 changed nothing on the wide model: no limit it cannot meet"
    if increase > 0:
        half = round(increase / 2, 6)
        limit = ["--max-perplexity-increase", str(half)]
        expected = (
            f"rose {increase:.2%} ({quality['fp32Perplexity']:.3f} -> {quality['quantizedPerplexity']:.3f}), "
            f"over the limit export.maxPerplexityIncrease {half}"
        )
    else:
        limit = ["--min-token-agreement", "1"]
        expected = f"greedy token agreement with float32 {agreement:.3f}"
    output = tmp_path / "onnx"
    code, events, _ = run_engine(
        "export", "--model", wide_llama_dir, "--output", output, "--parity-prompts", "1", "--quantize", "int8",
        "--quality-rows", splits["validation"], *limit,
    )
    error = events[-1]
    assert_engine_event(error)
    assert code == 4 and error["event"] == "error" and error["kind"] == "parity"
    message = error["message"]
    assert message.startswith("quality: the int8 export fails its limits: ") and expected in message, message
    assert message.endswith("the export was removed")
    assert not output.exists() and not list(tmp_path.glob(".tmp-*"))


def test_a_wrong_setting_is_a_config_error_before_the_model_loads(wide_llama_dir, tmp_path):
    code, events, _ = run_engine("export", "--model", wide_llama_dir, "--output", tmp_path / "a", "--quantize", "int8",
                                 "--min-token-agreement", "1.5")
    assert code == 2 and events == [
        {"event": "error", "kind": "config", "message": "--min-token-agreement 1.5: must be a share from 0 to 1"}
    ]
    with pytest.raises(ConfigError, match="--quantize fp16: must be one of none, int8, int4"):
        export(str(wide_llama_dir), str(tmp_path / "b"), 1, lambda event: None, quantization=Quantization("fp16"))
