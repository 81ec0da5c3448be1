"""Export the sentence embedder (engine/embedder.py) to ONNX for Node, and prove it embeds as PyTorch does.

The graph is the whole sentence embedder, pooling included: `input_ids` and `attention_mask`
[batch, sequence] in, `sentence_embedding` [batch, 384] out, mean-pooled over the mask and
L2-normalised. The pooling is traced from `mean_pool_normalize`, the function `embed` uses, so
Node does no arithmetic of its own: it tokenizes, pads, runs the graph and reads unit vectors.

Beside it lie tokenizer.json (its truncation set to maxTokens, its fixed padding removed: the
sentence-transformers folder ships 128 and a fixed pad to 128, which sentence-transformers overrides)
and tokenizer_config.json, and `embedder.json`, the manifest (schemas/embedder.ts). The parity check
embeds a few varied sentences (short, empty, non-ASCII, past maxTokens, upper-case) with PyTorch and
with ONNX Runtime, as one padded batch and one at a time; a difference over 1e-5 in any component
fails the export and leaves no output folder.
"""

import json
import time
from pathlib import Path

from engine.embedder import EMBEDDER_DISTRIBUTION, MODEL_NAME, Embedder, ensure_embedder
from engine.events import ConfigError, Emit, log
from engine.export import OPSET, ParityError, onnx_session, replacing_folder, tracer_warnings_silenced

ONNX_FILE = "model.onnx"
MANIFEST_FILE = "embedder.json"
PARITY_TOLERANCE = 1e-5  # largest allowed |ONNX Runtime - PyTorch| in any component of a unit vector
INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAME = "sentence_embedding"
PARITY_SENTENCES = [
    "How do I reset my router?",
    "Hi",
    "   ",  # nothing but whitespace: [CLS] [SEP]
    "Ünïcödé café: 日本語のマニュアル, naïve façade, 50 € for ½ price 😀",
    "WARRANTY PERIOD FOR THE AURORA PULSE X3???",
    # Over 256 tokens, so the cut at maxTokens is part of the check.
    " ".join(["My headphones keep disconnecting from Bluetooth every few minutes, what should I try next?"] * 20),
]


def check_embedder_output(output_dir: str) -> Path:
    """An absent or empty folder, or an earlier embedder export (replaced); never anything else we would delete."""
    folder = Path(output_dir).expanduser().resolve()
    if folder.exists():
        if not folder.is_dir():
            raise ConfigError(f"--output {folder}: exists and is not a folder")
        if any(folder.iterdir()) and not (folder / MANIFEST_FILE).is_file():
            raise ConfigError(f"--output {folder}: exists, is not empty and is not an earlier embedder export; choose another folder")
    return folder


def pooled_encoder(embedder: Embedder):
    """The embedder as a function of two int64 tensors, returning unit vectors."""
    import torch

    class PooledEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = embedder.model

        def forward(self, input_ids, attention_mask):
            return embedder.encode_batch(input_ids, attention_mask)

    return PooledEncoder().eval()


def export_onnx(embedder: Embedder, destination: Path) -> None:
    """Trace with a batch of 2 (one padded row) and 7 tokens, so neither size is baked in."""
    import torch

    input_ids, attention_mask = embedder.tokenize(["How do I pair my headphones?", "Hi"])
    dynamic_axes = {name: {0: "batch_size", 1: "sequence_length"} for name in INPUT_NAMES}
    dynamic_axes[OUTPUT_NAME] = {0: "batch_size"}
    with torch.no_grad(), tracer_warnings_silenced():
        torch.onnx.export(
            pooled_encoder(embedder),
            (input_ids, attention_mask),
            str(destination / ONNX_FILE),
            dynamo=False,  # the TorchScript exporter, as engine/export.py uses
            input_names=INPUT_NAMES,
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
        )


def onnx_embed(session, embedder: Embedder, texts: list[str]):
    """ONNX Runtime's embeddings of `texts` as one padded batch, tokenized as `embed` tokenizes."""
    input_ids, attention_mask = embedder.tokenize(texts)
    (vectors,) = session.run([OUTPUT_NAME], {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})
    return vectors


def check_parity(embedder: Embedder, session) -> float:
    """Largest |ONNX Runtime - PyTorch| over every component, batched and one at a time; over the tolerance fails."""
    import numpy as np

    expected = embedder.embed(PARITY_SENTENCES).numpy()
    batched = onnx_embed(session, embedder, PARITY_SENTENCES)
    alone = np.concatenate([onnx_embed(session, embedder, [text]) for text in PARITY_SENTENCES])
    worst, worst_sentence = 0.0, 0
    for actual in (batched, alone):
        differences = np.abs(actual - expected).max(axis=1)
        if differences.max() > worst:
            worst, worst_sentence = float(differences.max()), int(differences.argmax())
    if not worst <= PARITY_TOLERANCE:  # `not <=` also catches NaN
        raise ParityError(
            f"parity: sentence {worst_sentence + 1} of {len(PARITY_SENTENCES)} ({PARITY_SENTENCES[worst_sentence][:60]!r}) "
            f"differs by {worst:.3g} between PyTorch and ONNX Runtime (tolerance {PARITY_TOLERANCE}); the export was removed"
        )
    return worst


def write_tokenizer(embedder: Embedder, destination: Path) -> None:
    """tokenizer.json cut at maxTokens with no fixed padding (as `embed` tokenizes), tokenizer_config.json."""
    tokenizer = json.loads((embedder.folder / "tokenizer.json").read_text())
    tokenizer["truncation"] = {"direction": "Right", "max_length": embedder.max_tokens, "strategy": "LongestFirst", "stride": 0}
    tokenizer["padding"] = None
    (destination / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False) + "\n")
    config = json.loads((embedder.folder / "tokenizer_config.json").read_text())
    config["model_max_length"] = embedder.max_tokens
    (destination / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def manifest(embedder: Embedder, max_abs_diff: float, onnx_bytes: int) -> dict:
    import onnxruntime
    import torch
    import transformers

    tokenizer = embedder.tokenizer
    marker = json.loads((embedder.folder / "complete").read_text())
    return {
        "format": "onnx",
        "file": ONNX_FILE,
        "opset": OPSET,
        "dtype": "float32",
        "model": MODEL_NAME,
        "source": f"{EMBEDDER_DISTRIBUTION} {marker['packageVersion']} ({marker['source']})",
        "dims": embedder.dims,
        "pooling": "mean",
        "normalised": True,
        "pooledInGraph": True,
        "maxTokens": embedder.max_tokens,
        "specialTokenIds": {"cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id, "pad": tokenizer.pad_token_id},
        "inputs": [{"name": name, "shape": ["batch_size", "sequence_length"]} for name in INPUT_NAMES],
        "outputs": [{"name": OUTPUT_NAME, "shape": ["batch_size", embedder.dims]}],
        "parity": {"sentences": len(PARITY_SENTENCES), "maxAbsDiff": max_abs_diff, "tolerance": PARITY_TOLERANCE},
        "onnxBytes": onnx_bytes,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__},
    }


def export_embedder(output_dir: str, emit: Emit) -> dict:
    """Export, write the files beside, check parity, write the manifest; `done` event; returns the metrics."""
    output = check_embedder_output(output_dir)
    started = time.perf_counter()
    embedder = Embedder(ensure_embedder())

    with replacing_folder(output) as temporary:
        log(f"exporting {MODEL_NAME} to ONNX (opset {OPSET}, float32, mean pooling and normalisation in the graph)")
        export_onnx(embedder, temporary)
        write_tokenizer(embedder, temporary)
        export_seconds = time.perf_counter() - started
        onnx_bytes = (temporary / ONNX_FILE).stat().st_size

        log(f"parity check: {len(PARITY_SENTENCES)} sentences, batched and one at a time, PyTorch vs ONNX Runtime")
        max_abs_diff = check_parity(embedder, onnx_session(temporary / ONNX_FILE))
        (temporary / MANIFEST_FILE).write_text(json.dumps(manifest(embedder, max_abs_diff, onnx_bytes), indent=2) + "\n")

    metrics = {
        "dims": embedder.dims,
        "paritySentences": len(PARITY_SENTENCES),
        "maxAbsDiff": max_abs_diff,
        "exportSeconds": round(export_seconds, 3),
        "onnxBytes": onnx_bytes,
    }
    log(f"exported to {output}: {onnx_bytes / 1e6:.1f} MB, embeddings within {max_abs_diff:.2g} of PyTorch's")
    emit({"event": "done", "step": 0, "outputDir": str(output), "metrics": metrics})
    return metrics
