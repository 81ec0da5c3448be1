"""Encoder-decoder models (tiny T5 and BART): batches, loss, LoRA and full fine-tuning, the artifact, perplexity."""

import contextlib
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from engine.batches import batch_tokens, collate, example_length, label_count, summed_loss
from engine.models import decoder_start_token_id, load_base_model, load_finetuned
from engine.prompts import IGNORE_INDEX, PromptEncoder
from engine.score import perplexity

from .conftest import assert_matches_schema, read_json, train_in_process
from .conftest import tiny_spec as conftest_tiny_spec
from .test_score import PERPLEXITY_TEXT

ARCHITECTURES = ["t5", "bart"]
# LoRA's A starts random and B at zero, so it climbs more slowly than full fine-tuning at one rate.
LEARNING_RATES = {"lora": 2e-2, "full": 3e-3}


@pytest.fixture(params=ARCHITECTURES)
def seq2seq_dir(request):
    return request.getfixturevalue(f"tiny_{request.param}_dir")


def seq2seq_encoder(folder):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return PromptEncoder.prepare_tokenizer(tokenizer, system_prompt=None, encoder_decoder=True)


def test_a_batch_pads_encoder_and_decoder_apart_and_starts_the_decoder_at_its_start_token(seq2seq_dir):
    model, tokenizer, _ = load_base_model(str(seq2seq_dir))
    encoder = PromptEncoder.prepare_tokenizer(tokenizer, None, encoder_decoder=True)
    examples = [encoder.encode("Can I return the webcam?", "Yes.", 64),
                encoder.encode("Why won't my e-reader turn on?", "Charge the e-reader for an hour, then hold the power button.", 64)]
    start, pad = decoder_start_token_id(model), tokenizer.pad_token_id
    batch = collate(examples, pad, torch.device("cpu"), start)
    short, long = examples
    assert batch["input_ids"].shape == (2, len(long.input_ids)) and batch["labels"].shape == (2, len(long.labels))
    assert batch["input_ids"][0].tolist() == short.input_ids + [pad] * (len(long.input_ids) - len(short.input_ids))
    assert batch["attention_mask"][0].tolist() == [1] * len(short.input_ids) + [0] * (len(long.input_ids) - len(short.input_ids))
    assert batch["labels"][0].tolist() == short.labels + [IGNORE_INDEX] * (len(long.labels) - len(short.labels))
    # The labels shifted right behind the start token, pad where a label is ignored: what the model itself
    # would build from `labels=` (T5's _shift_right, BART's shift_tokens_right).
    assert batch["decoder_input_ids"][1].tolist() == [start] + long.labels[:-1]
    assert torch.equal(batch["decoder_input_ids"], model.prepare_decoder_input_ids_from_labels(labels=batch["labels"]))
    # Every label counts (no causal shift); tokens are the encoder's and the decoder's.
    assert label_count(batch) == len(short.labels) + len(long.labels)
    assert batch_tokens(batch) == sum(map(example_length, examples)) == sum(len(e.input_ids) + len(e.labels) for e in examples)
    # The summed loss is the model's own mean loss over the labels, times their count.
    model.eval()
    with torch.no_grad():
        own = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        summed = summed_loss(model, batch, contextlib.nullcontext)
    torch.testing.assert_close(summed / label_count(batch), own)


def tiny_spec(base, output_dir, splits, strategy: str, **training) -> dict:
    return conftest_tiny_spec(base, output_dir, splits, strategy=strategy, maxSteps=12, batchSize=8,
                              learningRate=LEARNING_RATES[strategy], evalEvery=12, checkpointEvery=100, **training)


def step_losses(final_dir) -> list[float]:
    return [s["loss"] for s in read_json(final_dir / "history.json")["steps"]]


def assert_the_loss_went_down(result) -> None:
    losses = step_losses(result.final_dir)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses
    assert result.metrics["finalValidationLoss"] < result.metrics["initialValidationLoss"] - 0.1, result.metrics


def test_lora_trains_the_adapters_of_every_linear_layer_and_freezes_the_base(seq2seq_dir, splits, tmp_path):
    result = train_in_process(tiny_spec(seq2seq_dir, tmp_path / "out", splits, "lora"))
    assert_the_loss_went_down(result)
    model = result.model
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # The default targetModules, `all-linear`: the architecture's own layer names, the output layer left out.
    adapted = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name in trainable if "lora_A" in name}
    expected = {"t5": {"q", "k", "v", "o", "wi", "wo"}, "bart": {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}}
    assert adapted == expected[model.config.model_type]
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # initialised at zero, so they moved
    original, _, _ = load_base_model(str(seq2seq_dir))
    base = {name.replace(".base_layer", ""): p for name, p in model.get_base_model().state_dict().items() if "lora_" not in name}
    for name, tensor in original.state_dict().items():
        assert torch.equal(base[name], tensor), name

    # The artifact: a seq2seq adapter and format that load_finetuned turns back into the trained model.
    final = result.final_dir
    assert read_json(final / "adapter_config.json")["task_type"] == "SEQ_2_SEQ_LM"
    prompt_format = read_json(final / "prompt_format.json")
    assert (prompt_format["kind"], prompt_format["separator"], prompt_format["endOfTurn"]) == ("seq2seq", None, "</s>")
    assert_matches_schema(read_json(final / "metrics.json"), "train-metrics")
    assert_logits_match(final, model)


def assert_logits_match(final, trained) -> None:
    loaded, tokenizer, prompt_format = load_finetuned(final)
    assert prompt_format.kind == "seq2seq"
    encoder = PromptEncoder(prompt_format, tokenizer)
    input_ids = torch.tensor([encoder.prompt_ids("How do I reset my router?")])
    decoder_input_ids = torch.tensor([[decoder_start_token_id(loaded)] + tokenizer.encode("Hold the", add_special_tokens=False)])
    trained.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits,
                                   trained(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits)


def test_full_fine_tuning_changes_the_base_weights(seq2seq_dir, splits, tmp_path):
    result = train_in_process(tiny_spec(seq2seq_dir, tmp_path / "out", splits, "full"))
    assert_the_loss_went_down(result)
    assert all(p.requires_grad for p in result.model.parameters())
    original = load_file(seq2seq_dir / "model.safetensors")
    trained = load_file(result.final_dir / "model.safetensors")
    assert original.keys() == trained.keys()
    changed = [name for name in original if not torch.equal(original[name], trained[name])]
    assert len(changed) >= 0.9 * len(original), f"only {len(changed)} of {len(original)} tensors changed"
    assert_logits_match(result.final_dir, result.model)


def test_targets_named_for_another_architecture_are_a_config_error_naming_the_models_layers(tiny_t5_dir, splits, tmp_path):
    from engine.events import ConfigError

    llama_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    with pytest.raises(ConfigError) as raised:
        train_in_process(tiny_spec(tiny_t5_dir, tmp_path / "out", splits, "lora", lora={"targetModules": llama_modules}))
    message = str(raised.value)
    assert message.startswith("training.lora.targetModules: ")
    assert "this model's linear layers are: k, lm_head, o, q, v, wi, wo; `all-linear` picks them all" in message


def test_perplexity_scores_the_text_as_the_decoders_target_of_an_empty_prompt(seq2seq_dir, tmp_path):
    (tmp_path / "text.txt").write_text(PERPLEXITY_TEXT)
    model, tokenizer, _ = load_base_model(str(seq2seq_dir))
    ids = tokenizer(PERPLEXITY_TEXT, add_special_tokens=False)["input_ids"]
    empty_prompt = tokenizer("", add_special_tokens=True)["input_ids"]
    assert empty_prompt == {"t5": [tokenizer.eos_token_id], "bart": [tokenizer.bos_token_id, tokenizer.eos_token_id]}[model.config.model_type]
    # Independently: the model's own loss of the text as labels, leaving out the first token's term.
    with torch.no_grad():
        logits = model.eval()(input_ids=torch.tensor([empty_prompt]), labels=torch.tensor([ids])).logits[0]
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    expected = math.exp(-log_probs[1:].gather(1, torch.tensor(ids[1:])[:, None]).mean().item())
    metrics = perplexity(str(seq2seq_dir), str(tmp_path / "text.txt"), 512, lambda event: None)
    assert metrics == {"perplexity": pytest.approx(expected, rel=1e-4), "tokens": len(ids) - 1}
    # Smaller windows still predict every token but the first exactly once.
    small = perplexity(str(seq2seq_dir), str(tmp_path / "text.txt"), 8, lambda event: None)
    assert small["tokens"] == len(ids) - 1 and math.isfinite(small["perplexity"])
