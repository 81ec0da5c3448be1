"""ONNX export with a KV cache: the files, the graph's inputs and outputs, and parity with PyTorch."""

import json
import subprocess
import time

import numpy as np
import onnx
import pytest
import torch

from engine.events import ConfigError
from engine.export import ParityError, export, io_names, load_for_export, onnx_session
from engine.prompts import PROMPT_FORMAT_FILE

from .conftest import PROJECT_ROOT, assert_engine_event, assert_matches_schema, engine_command, read_json, run_engine, train_in_process
from .conftest import tiny_spec as conftest_tiny_spec

EXPORTED_FILES = [
    "model.onnx", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "prompt_format.json",
    "generation_config.json", "config.json", "export.json",
]


def tiny_spec(base, output_dir, splits, **training) -> dict:
    """Three steps are enough to have a trained artifact to export."""
    return conftest_tiny_spec(base, output_dir, splits, **{"maxSteps": 3, **training})


@pytest.fixture(scope="module")
def lora_final(tiny_llama_dir, splits, tmp_path_factory):
    """A real `<outputDir>/final` with a LoRA adapter on the tiny chat-template Llama (3 steps)."""
    return train_in_process(tiny_spec(tiny_llama_dir, tmp_path_factory.mktemp("lora") / "out", splits)).final_dir


@pytest.fixture(scope="module")
def lora_export(lora_final, tmp_path_factory):
    """`python -m engine export` of the LoRA artifact, as the TypeScript activity runs it."""
    output = tmp_path_factory.mktemp("export") / "onnx"
    code, events, stderr = run_engine("export", "--model", lora_final, "--output", output)
    assert code == 0, stderr
    return output, events


def graph_shapes(values) -> dict:
    return {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] for value in values}


def test_help_documents_the_contract():
    result = subprocess.run(engine_command("export", "--help"), cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for text in ("usage: python -m engine export", "--model", "--output", "--parity-prompts", "past_key_values.{i}.key",
                 "encoder_model.onnx outputs: present.{i}.encoder.key", "past_key_values.{i}.decoder.key"):
        assert text in result.stdout


def test_export_writes_a_self_contained_folder(lora_export, lora_final):
    output, events = lora_export
    assert sorted(path.name for path in output.iterdir()) == sorted(EXPORTED_FILES)
    assert not list(output.parent.glob(".tmp-*"))
    assert json.loads((output / "prompt_format.json").read_text()) == json.loads((lora_final / "prompt_format.json").read_text())
    assert_matches_schema(read_json(output / "prompt_format.json"), "prompt-format")
    assert_matches_schema(read_json(output / "export.json"), "export-manifest")
    generation = json.loads((output / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [2] and generation["do_sample"] is False and generation["max_new_tokens"] > 0
    assert "<|im_start|>" in json.loads((output / "tokenizer_config.json").read_text())["chat_template"]
    config = json.loads((output / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["num_key_value_heads"], config["head_dim"]) == ("llama", 2, 4, 16)
    manifest = json.loads((output / "export.json").read_text())
    assert manifest["mergedAdapter"] is True and manifest["opset"] >= 17 and manifest["dtype"] == "float32"
    assert manifest["parity"] == {"prompts": 4, "identical": True, "tokens": manifest["parity"]["tokens"], "maxNewTokens": 16}
    # The folder alone is enough: the tokenizer and its chat template load from it.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(output)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False).endswith(
        "<|im_start|>assistant\n"
    )


def test_events_validate_and_report_parity(lora_export):
    output, events = lora_export
    for event in events:
        assert_engine_event(event)
    assert [event["event"] for event in events] == ["done"]
    done = events[0]
    assert done["step"] == 0 and done["outputDir"] == str(output)
    metrics = done["metrics"]
    assert set(metrics) == {
        "parityPrompts", "parityTokens", "paritySeconds", "exportSeconds", "onnxBytes", "weightBits", "tokenAgreement", "perplexityIncrease",
    }
    assert (metrics["weightBits"], metrics["tokenAgreement"], metrics["perplexityIncrease"]) == (32, None, None)
    assert_matches_schema(metrics, "export-metrics")
    assert metrics["parityPrompts"] == 4 and metrics["parityTokens"] > 4  # prompts of up to 16 tokens, eos ends one
    assert metrics["onnxBytes"] == (output / "model.onnx").stat().st_size


def test_graph_inputs_and_outputs_have_the_transformers_js_names_and_dynamic_axes(lora_export):
    output, _ = lora_export
    graph = onnx.load(str(output / "model.onnx"), load_external_data=False).graph
    inputs, outputs = graph_shapes(graph.input), graph_shapes(graph.output)
    assert list(inputs) == ["input_ids", "attention_mask", "position_ids",
                            "past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"]
    assert list(outputs) == ["logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"]
    assert inputs["input_ids"] == inputs["position_ids"] == ["batch_size", "sequence_length"]
    assert inputs["attention_mask"] == ["batch_size", "total_sequence_length"]
    assert inputs["past_key_values.1.value"] == ["batch_size", 4, "past_sequence_length", 16]
    assert outputs["logits"] == ["batch_size", "sequence_length", 49152]
    assert outputs["present.0.key"] == ["batch_size", 4, "total_sequence_length", 16]
    assert [value.type.tensor_type.elem_type for value in graph.input[:4]] == [onnx.TensorProto.INT64] * 3 + [onnx.TensorProto.FLOAT]
    # One copy of the tied embeddings: the lm_head must not be stored again, transposed.
    assert sum(1 for tensor in graph.initializer if 49152 in tensor.dims) == 1


def test_logits_match_pytorch_with_and_without_past_and_with_left_padding(lora_export, lora_final):
    output, _ = lora_export
    model, tokenizer, _ = load_for_export(lora_final)
    session = onnx_session(output / "model.onnx")
    input_names = io_names(2)[0]
    ids = tokenizer("<|im_start|>user\nHow do I reset my router?<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    empty = np.zeros((1, 4, 0, 16), dtype=np.float32)

    def run(token_ids, past, position_start=0):
        feed = {
            "input_ids": np.array([token_ids]),
            "attention_mask": np.ones((1, position_start + len(token_ids)), dtype=np.int64),
            "position_ids": np.arange(position_start, position_start + len(token_ids))[None, :],
            **dict(zip(input_names[3:], past)),
        }
        return session.run(None, feed)

    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits.numpy()
    logits, *_ = run(ids, [empty] * 4)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    # The prompt in two chunks: the second sees the first through the cache.
    _, *presents = run(ids[:7], [empty] * 4)
    assert presents[0].shape == (1, 4, 7, 16)
    logits, *presents = run(ids[7:], presents, position_start=7)
    np.testing.assert_allclose(logits, expected[:, 7:], atol=1e-4, rtol=0)
    assert presents[0].shape == (1, 4, len(ids), 16)

    # A batch of two, the shorter one left-padded, positions counted from its first real token.
    short = ids[5:]
    pad = len(ids) - len(short)
    mask = np.array([[1] * len(ids), [0] * pad + [1] * len(short)])
    feed = {
        "input_ids": np.array([ids, [tokenizer.pad_token_id] * pad + short]),
        "attention_mask": mask,
        "position_ids": np.clip(mask.cumsum(1) - 1, 0, None),
        **{name: np.zeros((2, 4, 0, 16), dtype=np.float32) for name in input_names[3:]},
    }
    logits = session.run(["logits"], feed)[0]
    with torch.no_grad():
        expected_short = model(torch.tensor([short])).logits.numpy()
    np.testing.assert_allclose(logits[:1], expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits[1:, pad:], expected_short, atol=1e-4, rtol=0)


def test_full_fine_tune_exports_with_parity(make_spec, tiny_llama_dir, tmp_path):
    final = train_in_process(make_spec(tiny_llama_dir, strategy="full", maxSteps=2, evalEvery=2, checkpointEvery=2)).final_dir
    events = []
    result = export(str(final), str(tmp_path / "onnx"), parity_prompts=2, emit=events.append)
    assert json.loads((result.output_dir / "export.json").read_text())["mergedAdapter"] is False
    assert_matches_schema(read_json(result.output_dir / "export.json"), "export-manifest")
    assert_matches_schema(events[0]["metrics"], "export-metrics")
    assert events[0]["metrics"]["parityPrompts"] == 2 and events[0]["metrics"]["parityTokens"] > 2


def test_plain_format_gpt2_lora_exports_with_parity(make_spec, tiny_gpt2_dir, tmp_path):
    # GPT-2 has dropout 0.1: parity also proves the export leaves the model in eval mode.
    spec = make_spec(tiny_gpt2_dir, maxSteps=3, evalEvery=3, checkpointEvery=3, lora={"targetModules": ["all-linear"]})
    final = train_in_process(spec).final_dir
    result = export(str(final), str(tmp_path / "onnx"), parity_prompts=2, emit=lambda event: None)
    assert json.loads((result.output_dir / "prompt_format.json").read_text())["kind"] == "plain"
    assert_matches_schema(read_json(result.output_dir / "prompt_format.json"), "prompt-format")
    manifest = json.loads((result.output_dir / "export.json").read_text())
    assert_matches_schema(manifest, "export-manifest")
    assert (manifest["modelType"], manifest["numKeyValueHeads"], manifest["headDim"]) == ("gpt2", 2, 16)
    assert manifest["parity"]["identical"] and "<|answer|>" in (result.output_dir / "tokenizer.json").read_text()


def test_different_tokens_fail_the_export_and_leave_no_folder(lora_final, tmp_path, monkeypatch):
    from engine import export as export_module

    honest = export_module.onnx_greedy

    def off_by_one_at_third_token(*args):
        tokens = honest(*args)
        tokens[2] += 1
        return tokens

    monkeypatch.setattr(export_module, "onnx_greedy", off_by_one_at_third_token)
    with pytest.raises(ParityError, match=r"^parity: prompt 1 of 4 \('How do I reset my router\?'\) differs at new token 3: "):
        export(str(lora_final), str(tmp_path / "onnx"), parity_prompts=4, emit=lambda event: None)
    assert list(tmp_path.iterdir()) == []
    assert ParityError.exit_code == 4 and ParityError.kind == "parity"


def test_missing_or_broken_model_folder_is_a_config_error(tmp_path, lora_final):
    code, events, stderr = run_engine("export", "--model", tmp_path / "nowhere", "--output", tmp_path / "onnx")
    assert code == 2 and events == [{"event": "error", "kind": "config", "message": f"--model {tmp_path / 'nowhere'}: folder does not exist"}]
    assert "Traceback" not in stderr

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "lla')
    code, events, _ = run_engine("export", "--model", broken, "--output", tmp_path / "onnx")
    assert code == 2 and f"--model {broken / 'config.json'}: not readable JSON" in events[0]["message"]

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    code, events, _ = run_engine("export", "--model", not_a_model, "--output", tmp_path / "onnx")
    assert code == 2 and "has neither config.json nor adapter_config.json" in events[0]["message"]

    code, events, _ = run_engine("export", "--model", lora_final, "--output", not_a_model)
    assert code == 2 and "is not empty and is not an earlier export" in events[0]["message"]
    assert (not_a_model / "notes.txt").is_file()
    for event in events:
        assert_engine_event(event)


def test_corrupt_weights_are_a_config_error_naming_the_folder(tiny_llama_dir, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (corrupt / name).write_bytes((tiny_llama_dir / name).read_bytes())
    (corrupt / "model.safetensors").write_bytes((tiny_llama_dir / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ConfigError, match=rf"^--model {corrupt}: cannot load the model"):
        export(str(corrupt), str(tmp_path / "onnx"), parity_prompts=1, emit=lambda event: None)
    assert not (tmp_path / "onnx").exists()


def test_base_folder_exports_with_the_system_prompt_a_trained_artifact_refuses_one(tiny_llama_dir, lora_final, tmp_path):
    # The untuned baseline must be asked exactly as the tuned model: same chat template, same system prompt.
    result = export(str(tiny_llama_dir), str(tmp_path / "base"), parity_prompts=1, emit=lambda event: None, system_prompt="Be brief.")
    assert json.loads((result.output_dir / PROMPT_FORMAT_FILE).read_text())["systemPrompt"] == "Be brief."
    assert_matches_schema(read_json(result.output_dir / PROMPT_FORMAT_FILE), "prompt-format")
    assert_matches_schema(read_json(result.output_dir / "export.json"), "export-manifest")
    with pytest.raises(ConfigError, match="is a trained artifact, whose prompt format already fixes the system prompt"):
        export(str(lora_final), str(tmp_path / "tuned"), parity_prompts=1, emit=lambda event: None, system_prompt="Be brief.")
    assert not (tmp_path / "tuned").exists()


@pytest.mark.slow
def test_real_default_model_exports_with_parity(default_model_dir, tmp_path):
    # One torch thread: on a few shared cores, two spinning threads make PyTorch's generate several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        check_real_default_model_export(default_model_dir, tmp_path)
    finally:
        torch.set_num_threads(threads)
    print(f"real default model: whole test {time.perf_counter() - started:.1f} s")


def check_real_default_model_export(default_model_dir, tmp_path):
    events = []
    result = export(str(default_model_dir), str(tmp_path / "onnx"), parity_prompts=2, emit=events.append)
    manifest = json.loads((result.output_dir / "export.json").read_text())
    assert (manifest["numLayers"], manifest["numKeyValueHeads"], manifest["headDim"], manifest["vocabSize"]) == (30, 3, 64, 49152)
    assert manifest["parity"]["identical"] and manifest["parity"]["tokens"] >= 2
    assert 500e6 < manifest["onnxBytes"] < 600e6  # 135M float32 parameters, the tied embeddings once
    print(f"real default model: {events[0]['metrics']}")


def test_external_data_over_the_protobuf_limit_ends_up_in_one_file(tmp_path):
    # Past 2 GB the TorchScript exporter writes one file per tensor; a small graph stands in for that.
    from onnx import TensorProto, helper, numpy_helper

    from engine.export import gather_external_data

    weights = [numpy_helper.from_array(np.full((32, 32), n, dtype=np.float32), f"w{n}") for n in range(3)]
    nodes = [helper.make_node("Add", ["x", "w0"], ["a"]), helper.make_node("Add", ["a", "w1"], ["b"]),
             helper.make_node("Add", ["b", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 32])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(tmp_path / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=0)
    assert len(list(tmp_path.iterdir())) == 4
    gather_external_data(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx", "model.onnx_data"]
    output = onnx_session(tmp_path / "model.onnx").run(None, {"x": np.zeros((32, 32), dtype=np.float32)})[0]
    np.testing.assert_array_equal(output, np.full((32, 32), 3, dtype=np.float32))


def test_untuned_base_without_chat_template_exports_in_the_plain_format(tiny_gpt2_dir, tmp_path):
    # The base-model baseline of a GPT-2 run: asked in the plain format the tuned model trains on, with the
    # separator token added to the base model as training adds it, its row the mean of the other rows.
    from transformers import AutoModelForCausalLM

    from engine.prompts import SEPARATOR_TOKEN

    model, tokenizer, prompt_format = load_for_export(tiny_gpt2_dir, system_prompt="Be brief.")
    original = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir, dtype=torch.float32).get_input_embeddings().weight
    rows = model.get_input_embeddings().weight
    separator = tokenizer.convert_tokens_to_ids(SEPARATOR_TOKEN)
    assert (prompt_format.kind, prompt_format.separator, prompt_format.systemPrompt) == ("plain", SEPARATOR_TOKEN, "Be brief.")
    assert separator == original.shape[0] and rows.shape[0] == original.shape[0] + 1
    torch.testing.assert_close(rows[:-1], original)
    torch.testing.assert_close(rows[separator], original.mean(dim=0))
    assert model.get_output_embeddings().weight.data_ptr() == rows.data_ptr()  # GPT-2 ties its output layer

    result = export(str(tiny_gpt2_dir), str(tmp_path / "base"), parity_prompts=2, emit=lambda event: None, system_prompt="Be brief.")
    saved = read_json(result.output_dir / PROMPT_FORMAT_FILE)
    assert_matches_schema(saved, "prompt-format")
    assert (saved["kind"], saved["separator"], saved["endOfTurn"], saved["systemPrompt"]) == ("plain", SEPARATOR_TOKEN, "<|endoftext|>", "Be brief.")
    manifest = read_json(result.output_dir / "export.json")
    assert manifest["mergedAdapter"] is False and manifest["vocabSize"] == original.shape[0] + 1 and manifest["parity"]["identical"]
    added = {token["content"]: token for token in read_json(result.output_dir / "tokenizer.json")["added_tokens"]}
    assert added[SEPARATOR_TOKEN]["id"] == separator and added[SEPARATOR_TOKEN]["special"] is True
    assert not (result.output_dir / "chat_template.jinja").exists()


def hub_cache_with(folder, repo_id: str, cache):
    """A Hugging Face hub cache holding `folder` as `repo_id`, as a download would leave it."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return cache


def test_a_cached_hub_id_exports_and_a_missing_one_says_both_fixes(tiny_gpt2_dir, tmp_path):
    import os

    cache = hub_cache_with(tiny_gpt2_dir, "tiny-org/tiny-gpt2", tmp_path / "hub")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    def engine(*args):
        result = subprocess.run(engine_command(*args), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env=env)
        return result.returncode, [json.loads(line) for line in result.stdout.splitlines() if line.strip()], result.stderr

    code, events, stderr = engine("export", "--model", "tiny-org/tiny-gpt2", "--output", tmp_path / "onnx", "--parity-prompts", "1")
    assert code == 0, stderr
    assert read_json(tmp_path / "onnx" / "export.json")["source"] == "tiny-org/tiny-gpt2"
    assert read_json(tmp_path / "onnx" / PROMPT_FORMAT_FILE)["kind"] == "plain"

    code, events, stderr = engine("export", "--model", "tiny-org/not-cached", "--output", tmp_path / "other")
    assert code == 2 and events[0]["kind"] == "config" and "Traceback" not in stderr
    assert "'tiny-org/not-cached' is not a local model folder, and as a hub id it could not be loaded" in events[0]["message"]
    assert not (tmp_path / "other").exists()


# Encoder-decoder models (T5, FLAN-T5, BART): encoder_model.onnx once per prompt, decoder_model.onnx per token.

SEQ2SEQ_FILES = [
    "encoder_model.onnx", "decoder_model.onnx", "tokenizer.json", "tokenizer_config.json", "prompt_format.json",
    "generation_config.json", "config.json", "export.json",
]
# Questions of different lengths, so a batch of their prompts is really padded.
SEQ2SEQ_QUESTIONS = ["How do I reset my router?", "Hi", "Why won't my e-reader turn on after I charged it all night?", "Can I return it?"]


@pytest.fixture(scope="module")
def wide_t5_dir(tmp_path_factory):
    """Tiny T5 with wide random weights: greedy answers that differ from prompt to prompt."""
    from .conftest import qa_sentences
    from .tiny_models import build_tiny_t5

    return build_tiny_t5(tmp_path_factory.mktemp("wide-t5"), qa_sentences(), std=0.5)


@pytest.fixture(scope="module")
def wide_bart_dir(tmp_path_factory):
    from .conftest import qa_sentences
    from .tiny_models import build_tiny_bart

    return build_tiny_bart(tmp_path_factory.mktemp("wide-bart"), qa_sentences(), std=0.5)


@pytest.fixture(scope="module")
def t5_export(wide_t5_dir, tmp_path_factory):
    events = []
    result = export(str(wide_t5_dir), str(tmp_path_factory.mktemp("t5-export") / "onnx"), parity_prompts=3, emit=events.append)
    return result.output_dir, events


@pytest.fixture(scope="module")
def bart_export(wide_bart_dir, tmp_path_factory):
    events = []
    result = export(str(wide_bart_dir), str(tmp_path_factory.mktemp("bart-export") / "onnx"), parity_prompts=3, emit=events.append)
    return result.output_dir, events


def test_seq2seq_exports_write_both_graphs_and_the_contract_manifest(t5_export, bart_export):
    for (output, events), model_type, start, heads in ((t5_export, "t5", 0, 2), (bart_export, "bart", 2, 2)):
        assert sorted(path.name for path in output.iterdir()) == sorted(SEQ2SEQ_FILES)
        assert not list(output.parent.glob(".tmp-*"))
        manifest = read_json(output / "export.json")
        assert_matches_schema(manifest, "export-manifest")
        assert (manifest["architecture"], manifest["file"], manifest["encoderFile"], manifest["externalData"]) == (
            "encoder-decoder", "decoder_model.onnx", "encoder_model.onnx", None)
        assert (manifest["modelType"], manifest["decoderStartTokenId"], manifest["mergedAdapter"]) == (model_type, start, False)
        assert (manifest["numLayers"], manifest["numKeyValueHeads"], manifest["headDim"]) == (2, heads, 16)
        assert manifest["eosTokenIds"] == [read_json(output / "config.json")["eos_token_id"]]
        assert manifest["parity"] == {"prompts": 3, "identical": True, "tokens": events[0]["metrics"]["parityTokens"], "maxNewTokens": 16}
        assert manifest["onnxBytes"] == sum((output / name).stat().st_size for name in ("encoder_model.onnx", "decoder_model.onnx"))
        assert_matches_schema(events[0]["metrics"], "export-metrics")
        prompt_format = read_json(output / "prompt_format.json")
        assert_matches_schema(prompt_format, "prompt-format")
        assert (prompt_format["kind"], prompt_format["separator"]) == ("seq2seq", None)
        generation = read_json(output / "generation_config.json")
        assert generation["decoder_start_token_id"] == start and generation["do_sample"] is False


def test_seq2seq_graphs_have_the_contract_names_dynamic_axes_and_no_recomputed_cross_attention(t5_export, bart_export):
    for output, _ in (t5_export, bart_export):
        manifest = read_json(output / "export.json")
        encoder = onnx.load(str(output / "encoder_model.onnx")).graph
        decoder = onnx.load(str(output / "decoder_model.onnx")).graph
        cross = ["batch_size", 2, "encoder_sequence_length", 16]
        assert graph_shapes(encoder.input) == {"input_ids": ["batch_size", "encoder_sequence_length"],
                                               "attention_mask": ["batch_size", "encoder_sequence_length"]}
        assert graph_shapes(encoder.output) == {f"present.{i}.encoder.{kind}": cross for i in (0, 1) for kind in ("key", "value")}
        inputs = graph_shapes(decoder.input)
        assert list(inputs) == ["input_ids", "encoder_attention_mask"] + [
            f"past_key_values.{i}.{part}.{kind}" for i in (0, 1) for part in ("decoder", "encoder") for kind in ("key", "value")]
        assert inputs["input_ids"] == ["batch_size", "sequence_length"]
        assert inputs["encoder_attention_mask"] == ["batch_size", "encoder_sequence_length"]
        assert inputs["past_key_values.1.decoder.value"] == ["batch_size", 2, "past_sequence_length", 16]
        assert inputs["past_key_values.1.encoder.key"] == cross
        outputs = graph_shapes(decoder.output)
        assert list(outputs) == ["logits"] + [f"present.{i}.decoder.{kind}" for i in (0, 1) for kind in ("key", "value")]
        assert outputs["logits"] == ["batch_size", "sequence_length", manifest["vocabSize"]]
        assert outputs["present.0.decoder.key"] == ["batch_size", 2, "total_sequence_length", 16]
        # The manifest describes the graphs as they are.
        for key, values in (("encoderInputs", encoder.input), ("encoderOutputs", encoder.output),
                            ("inputs", decoder.input), ("outputs", decoder.output)):
            assert manifest[key] == [{"name": name, "shape": shape} for name, shape in graph_shapes(values).items()]
        # The decoder graph holds no cross-attention key/value projections (it reuses the encoder graph's
        # outputs) and nothing of the encoder; the encoder graph nothing of the decoder's self-attention.
        decoder_weights = " ".join(tensor.name for tensor in decoder.initializer)
        encoder_weights = " ".join(tensor.name for tensor in encoder.initializer)
        assert not any(name in decoder_weights for name in ("EncDecAttention.k.", "EncDecAttention.v.", "encoder_attn.k_proj",
                                                             "encoder_attn.v_proj", "encoder.block", "encoder.layers"))
        assert ("EncDecAttention.k.weight" in encoder_weights) or ("encoder_attn.k_proj.weight" in encoder_weights)
        assert not any(name in encoder_weights for name in ("decoder.block.0.layer.0.", "decoder.layers.0.self_attn", "lm_head"))


def seq2seq_sessions(output):
    from engine.export_seq2seq import DECODER_FILE, ENCODER_FILE

    return onnx_session(output / ENCODER_FILE), onnx_session(output / DECODER_FILE), read_json(output / "export.json")


def test_seq2seq_batch_of_right_padded_prompts_gives_each_prompt_its_own_tokens(t5_export, bart_export):
    # The Node runtime batches encoder prompts right-padded and steps every row from the decoder start together.
    from transformers import AutoTokenizer

    from engine.export_seq2seq import onnx_seq2seq_greedy, onnx_seq2seq_greedy_batch
    from engine.prompts import PromptEncoder, PromptFormat

    from .greedy_reference import reference_rows

    for output, _ in (t5_export, bart_export):
        encoder_session, decoder_session, manifest = seq2seq_sessions(output)
        tokenizer = AutoTokenizer.from_pretrained(output)
        prompts = [PromptEncoder(PromptFormat.load(output), tokenizer).prompt_ids(q) for q in SEQ2SEQ_QUESTIONS]
        assert len({len(prompt) for prompt in prompts}) == len(prompts)
        settings = (manifest, 12, set(manifest["eosTokenIds"]), manifest["decoderStartTokenId"], tokenizer.pad_token_id)
        alone = [onnx_seq2seq_greedy(encoder_session, decoder_session, prompt, *settings) for prompt in prompts]
        assert len({tuple(tokens) for tokens in alone}) > 1  # answers differ by prompt: a mixed-up row would show
        assert onnx_seq2seq_greedy_batch(encoder_session, decoder_session, prompts, *settings) == alone
        # The reference the Node tests compare with: PyTorch, from the export folder alone.
        rows = reference_rows(output, SEQ2SEQ_QUESTIONS, new_tokens=12)
        assert [row["promptIds"] for row in rows] == prompts
        assert [row["tokens"] for row in rows] == alone


def test_seq2seq_finished_rows_stop_and_keep_their_eos(bart_export):
    # A row that reaches eos keeps stepping with the pad id while the others go on; its answer ends at its eos.
    from engine.export_seq2seq import onnx_seq2seq_greedy_batch

    output, _ = bart_export
    encoder_session, decoder_session, manifest = seq2seq_sessions(output)
    prompts = [[0, 290, 304, 2], [0, 329, 281, 325, 319, 34, 2]]

    def greedy(eos_ids):
        return onnx_seq2seq_greedy_batch(encoder_session, decoder_session, prompts, manifest, 8, eos_ids, 2, 1)

    free = greedy(set())
    stop = free[0][2]  # pretend the first row's third token is an end token
    ended = greedy({stop})
    assert ended[0] == free[0][: free[0].index(stop) + 1]
    assert ended[1] == (free[1][: free[1].index(stop) + 1] if stop in free[1] else free[1])


def test_seq2seq_graph_that_computes_wrong_cross_attention_fails_parity(wide_bart_dir, tmp_path, monkeypatch):
    # A real defect in the graph, not in the loop: the encoder graph hands out values as keys and keys as values.
    from engine import export_seq2seq

    honest = export_seq2seq.cross_attention_encoder

    def keys_and_values_swapped(model):
        encoder = honest(model)

        class Swapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids, attention_mask):
                keys_values = self.encoder(input_ids, attention_mask)
                return tuple(keys_values[n ^ 1] for n in range(len(keys_values)))

        return Swapped().eval()

    monkeypatch.setattr(export_seq2seq, "cross_attention_encoder", keys_and_values_swapped)
    with pytest.raises(ParityError, match=r"^parity: prompt 1 of 2 \('How do I reset my router\?'\) differs at new token \d+: "
                                          r"PyTorch \d+ '.*', ONNX Runtime \d+ "):
        export(str(wide_bart_dir), str(tmp_path / "onnx"), parity_prompts=2, emit=lambda event: None)
    assert list(tmp_path.iterdir()) == []


def test_trained_lora_t5_exports_merged_with_parity(make_spec, wide_t5_dir, t5_export, tmp_path):
    # A real training run (3 steps, LoRA on every linear layer), then its export.
    # final/ holds the best weights: at 1e-3 the wide T5's validation loss is still best before step 1.
    spec = make_spec(wide_t5_dir, maxSteps=3, evalEvery=3, checkpointEvery=3, learningRate=1e-2, model={"systemPrompt": "Answer briefly."})
    final = train_in_process(spec).final_dir
    assert (final / "adapter_config.json").is_file()
    events = []
    export(str(final), str(tmp_path / "onnx"), parity_prompts=2, emit=events.append)
    assert_engine_event(events[0])
    manifest = read_json(tmp_path / "onnx" / "export.json")
    assert_matches_schema(manifest, "export-manifest")
    assert manifest["mergedAdapter"] is True and manifest["architecture"] == "encoder-decoder" and manifest["parity"]["identical"]
    assert read_json(tmp_path / "onnx" / "prompt_format.json") == read_json(final / "prompt_format.json")
    assert read_json(final / "prompt_format.json")["systemPrompt"] == "Answer briefly."
    # The adapter is in the weights: the tuned encoder's cross-attention keys differ from the base export's.
    prompt = {"input_ids": np.array([[5, 6, 7, 1]]), "attention_mask": np.ones((1, 4), dtype=np.int64)}
    tuned = onnx_session(tmp_path / "onnx" / "encoder_model.onnx").run(None, prompt)[0]
    base = onnx_session(t5_export[0] / "encoder_model.onnx").run(None, prompt)[0]
    assert not np.allclose(tuned, base, atol=1e-4)


def test_seq2seq_decoder_logits_match_pytorch_in_one_chunk_or_two(t5_export, bart_export, wide_t5_dir, wide_bart_dir):
    # Sequence and past lengths other than the traced ones (3 and 2), in a batch of two right-padded prompts.
    from transformers import AutoModelForSeq2SeqLM

    from engine.export_seq2seq import decoder_io_names

    for (output, _), base in ((t5_export, wide_t5_dir), (bart_export, wide_bart_dir)):
        encoder_session, decoder_session, manifest = seq2seq_sessions(output)
        model = AutoModelForSeq2SeqLM.from_pretrained(base, dtype=torch.float32).eval()
        prompts = np.array([[5, 6, 7, 8, 9, 10, 2], [11, 12, 13, 2, 1, 1, 1]])
        mask = np.array([[1] * 7, [1] * 4 + [0] * 3])
        answers = np.array([[manifest["decoderStartTokenId"], 20, 21, 22, 23, 24, 25, 26]] * 2)
        with torch.no_grad():
            expected = model(input_ids=torch.tensor(prompts), attention_mask=torch.tensor(mask),
                             decoder_input_ids=torch.tensor(answers)).logits.numpy()
        cross = encoder_session.run(None, {"input_ids": prompts, "attention_mask": mask})
        names = decoder_io_names(2)[0][2:]
        empty = np.zeros((2, 2, 0, 16), dtype=np.float32)

        def run(tokens, self_attention):
            past = [t for i in (0, 1) for t in (*self_attention[2 * i : 2 * i + 2], *cross[2 * i : 2 * i + 2])]
            return decoder_session.run(None, {"input_ids": tokens, "encoder_attention_mask": mask, **dict(zip(names, past))})

        logits, *_ = run(answers, [empty] * 4)
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
        first, *presents = run(answers[:, :5], [empty] * 4)
        logits, *presents = run(answers[:, 5:], presents)
        np.testing.assert_allclose(np.concatenate([first, logits], axis=1), expected, atol=1e-4, rtol=0)
        assert presents[0].shape == (2, 2, 8, 16)
