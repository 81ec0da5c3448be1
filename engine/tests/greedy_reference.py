"""PyTorch's greedy tokens for a few questions: the reference Node's generation tests compare against.

    python -m engine.tests.greedy_reference FOLDER '["How do I reset my router?", "Can I return the webcam?"]' [NEW_TOKENS]

FOLDER is an export (its export.json names the model it came from, loaded as the export loaded it:
adapter merged, float32, the base model's system prompt from the export's prompt format) or a model
folder. Prompts are encoded with the export's tokenizer and prompt format; decoder-only and
encoder-decoder models alike (for T5 and BART `promptIds` are the encoder's ids). One JSON line per
question on stdout:

    {"question": ..., "promptIds": [...], "tokens": [...], "greedy": [...], "eos": [...], "decoderStartTokenId": 0}

`tokens` end with the eos id when the answer ended within NEW_TOKENS (default 16); `greedy` is `tokens`
without eos ids, as the runtime returns an answer's tokens.
"""

import json
import sys
from pathlib import Path


def load_reference_model(folder: Path):
    """(model, tokenizer, prompt format) exactly as `engine export` had them for this export or model folder."""
    from transformers import AutoTokenizer

    from engine.export import MANIFEST_FILE, load_for_export
    from engine.models import is_hub_id
    from engine.prompts import PROMPT_FORMAT_FILE, PromptFormat

    if not (folder / MANIFEST_FILE).is_file():
        return load_for_export(folder)
    source = json.loads((folder / MANIFEST_FILE).read_text())["source"]
    source = source if is_hub_id(source) else Path(source)
    prompt_format = PromptFormat.load(folder)
    trained = isinstance(source, Path) and (source / PROMPT_FORMAT_FILE).is_file()
    model, _, _ = load_for_export(source, None if trained else prompt_format.systemPrompt)
    return model, AutoTokenizer.from_pretrained(folder), prompt_format


def reference_rows(folder: Path, questions: list[str], new_tokens: int = 16) -> list[dict]:
    from engine.export import end_token_ids, torch_greedy
    from engine.models import decoder_start_token_id, is_encoder_decoder
    from engine.prompts import PromptEncoder

    model, tokenizer, prompt_format = load_reference_model(folder)
    encoder = PromptEncoder(prompt_format, tokenizer)
    eos = end_token_ids(tokenizer, prompt_format)
    start = decoder_start_token_id(model) if is_encoder_decoder(model.config) else None
    rows = []
    for question in questions:
        prompt_ids = encoder.prompt_ids(question)
        tokens = torch_greedy(model, prompt_ids, new_tokens, eos, tokenizer.pad_token_id)
        rows.append({
            "question": question,
            "promptIds": prompt_ids,
            "tokens": tokens,
            "greedy": [token for token in tokens if token not in eos],
            "eos": eos,
            "decoderStartTokenId": start,
        })
    return rows


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python -m engine.tests.greedy_reference FOLDER QUESTIONS_JSON [NEW_TOKENS]")
    for row in reference_rows(Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 16):
        print(json.dumps(row), flush=True)
