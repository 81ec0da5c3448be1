"""Which weights train: LoRA adapters (peft) or every weight of the base model (full fine-tuning)."""

import torch

from engine.events import ConfigError
from engine.models import add_token_rows, is_encoder_decoder, load_base_model
from engine.prompts import PromptEncoder


def linear_module_names(model) -> list[str]:
    from transformers.pytorch_utils import Conv1D

    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))})


def apply_lora(model, lora: dict, new_token_ids: list[int]):
    """Wrap the model with LoRA adapters; only adapter weights (and new tokens' embeddings) train."""
    from peft import LoraConfig, get_peft_model

    layer_count = getattr(model.config, "num_hidden_layers", None)
    layers = lora.get("layers")
    if layers is not None and layer_count is not None and any(layer >= layer_count for layer in layers):
        bad = [layer for layer in layers if layer >= layer_count]
        raise ConfigError(f"training.lora.layers: {bad} out of range; this model has layers 0 to {layer_count - 1}")
    targets = lora["targetModules"]
    config = LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        layers_to_transform=layers,
        # A token added to the vocabulary (the plain format's separator) needs a trained embedding.
        trainable_token_indices=new_token_ids or None,
        # SEQ_2_SEQ_LM: peft's wrapper then passes decoder inputs through and saves a seq2seq adapter.
        task_type="SEQ_2_SEQ_LM" if is_encoder_decoder(model.config) else "CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:
        raise ConfigError(
            f"training.lora.targetModules: {str(error).splitlines()[0]} "
            f"(this model's linear layers are: {', '.join(linear_module_names(model))}; `all-linear` picks them all)"
        ) from None


def build_model(spec: dict):
    """Base model with the prompt format's tokens, then LoRA or everything trainable."""
    model, tokenizer, source = load_base_model(spec["model"]["base"])
    encoder = PromptEncoder.prepare_tokenizer(tokenizer, spec["model"].get("systemPrompt"), is_encoder_decoder(model.config))
    # The separator's row starts as the mean of the others, as the untuned baseline's export adds it.
    new_token_ids = add_token_rows(model, tokenizer)
    if spec["training"]["strategy"] == "lora":
        model = apply_lora(model, spec["training"]["lora"], new_token_ids)
    else:
        model.requires_grad_(True)
    return model, tokenizer, encoder, source


