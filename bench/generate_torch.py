"""The PyTorch side of the generation benchmark (bench/generation.ts): `model.generate()` on the weights
an ONNX export was made from.

Started by the driver, not by hand:
    .venv/bin/python bench/generate_torch.py EXPORT_DIR THREADS

A worker: it loads the model, prints one JSON line (where it loaded from, its threads, load seconds),
then answers each JSON line on stdin, `{"questions": [...], "maxNewTokens": N}`, with one JSON line,
`{"seconds": S, "cpuSeconds": C, "tokens": [[...], ...], "texts": [...], "promptIds": [[...], ...]}`, until stdin closes.
The driver times nothing here itself, so the two runtimes alternate batch by batch and other work on
the machine slows both alike.

An export folder holds the ONNX graph but no PyTorch weights, so the model is loaded from the source
folder its `export.json` names, with the export's own loader (a LoRA adapter merged, float32, eval).
Prompts, end tokens and pad id come from the export folder, as serve/ reads them, so both runtimes
see the same prompt ids (the driver compares them).

`seconds` covers what serve/'s `generate(questions)` does: encode the questions, left-pad, greedy
`generate()` with a KV cache, cut each row before its first end token, decode the text.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))


def load(export_dir: Path):
    """(model, tokenizer, encoder, end ids, pad id, source folder) for the export in export_dir."""
    from transformers import AutoTokenizer

    from engine.export import MANIFEST_FILE, load_for_export
    from engine.prompts import PromptEncoder, PromptFormat

    manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
    source = Path(manifest["source"])
    if not source.is_dir():
        sys.exit(f"{export_dir / MANIFEST_FILE}: its source folder {source} no longer exists; re-run the export")
    model, _, _ = load_for_export(source)
    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    encoder = PromptEncoder(PromptFormat.load(export_dir), tokenizer)
    # The pad id serve/ uses: generation_config.json's, else the tokenizer's, else the first end token.
    pad_id = json.loads((export_dir / "generation_config.json").read_text()).get("pad_token_id")
    if pad_id is None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else manifest["eosTokenIds"][0]
    return model, tokenizer, encoder, list(manifest["eosTokenIds"]), pad_id, source


def make_generate(model, tokenizer, encoder, end_ids: list[int], pad_id: int):
    """`generate(questions, max_new_tokens)` -> per row, (tokens before the end token, text)."""
    import torch
    from transformers import GenerationConfig

    def generate(questions: list[str], max_new_tokens: int) -> list[tuple[list[int], str]]:
        prompts = [encoder.prompt_ids(question) for question in questions]
        width = max(len(ids) for ids in prompts)
        # Left padding, as serve/ pads: every row's next token comes from the last column.
        input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in prompts])
        attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts])
        # A fresh config, as in engine/export.py: greedy, no penalties from the model's own generation_config.json.
        settings = GenerationConfig(
            do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=end_ids, pad_token_id=pad_id, use_cache=True
        )
        with torch.inference_mode():
            output = model.generate(input_ids, attention_mask=attention_mask, generation_config=settings)
        rows = []
        for generated in output[:, width:].tolist():
            end = next((n for n, token in enumerate(generated) if token in end_ids), len(generated))
            tokens = generated[:end]  # up to and excluding the end token, as serve/ counts them
            rows.append((tokens, tokenizer.decode(tokens, skip_special_tokens=True)))
        return rows

    return generate


def reply(message: dict) -> None:
    print(json.dumps(message), flush=True)


def main() -> None:
    export_dir, threads = Path(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # the driver went away: stop quietly, no traceback
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    # As many intra-op threads as onnxruntime-node's session gets (serve/generation.ts), so the two
    # runtimes use the same cores; one inter-op thread, as ORT's sequential executor. Set before any work.
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    transformers.utils.logging.disable_progress_bar()  # the driver's output is the table

    started = time.perf_counter()
    model, tokenizer, encoder, end_ids, pad_id, source = load(export_dir)
    generate = make_generate(model, tokenizer, encoder, end_ids, pad_id)
    reply({
        "runtime": "pytorch",
        "loadedFrom": str(source),
        "threads": torch.get_num_threads(),
        "loadSeconds": time.perf_counter() - started,
        "endTokenIds": end_ids,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    })
    for line in sys.stdin:
        request = json.loads(line)
        began, began_cpu = time.perf_counter(), time.process_time()
        rows = generate(request["questions"], request["maxNewTokens"])
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
        reply({
            "seconds": seconds,
            "cpuSeconds": cpu_seconds,
            "tokens": [row[0] for row in rows],
            "texts": [row[1] for row in rows],
            "promptIds": [encoder.prompt_ids(question) for question in request["questions"]],
        })


if __name__ == "__main__":
    main()
