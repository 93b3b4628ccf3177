"""Retrieval for the RAG baseline: corpus loading, chunking, BM25 / dense / hybrid retrievers, recall@k.

A retriever indexes chunks and answers a batch of queries with chunk indices, best first. Indexes
are cached on disk by a hash of the chunk texts and the retriever's settings, so a second run (or a
second technique in the same run) loads instead of rebuilding.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.embeddings import embedding_model_path
from harness.registry import Registry
from harness.yamlconfig import ConfigError, ConfigWarning

RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al., 2009); 60 is the usual choice


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    text: str


def load_corpus(path: Path) -> list[tuple[str, str]]:
    """(doc id, text) for each document: a folder's .txt/.md files, or a JSONL file of {id, text}."""
    if path.is_dir():
        return _load_folder(path)
    from harness.tasks import read_records

    documents: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    for line, record in read_records(path):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not _is_id(record.get("id")):
            raise ConfigError(
                f"{path}:{line}: each corpus record needs an 'id' (text or a whole number) and a 'text' string"
            )
        doc_id = str(record["id"])
        if doc_id in first_line:  # recall@k matches gold documents by id: two documents cannot share one
            raise ConfigError(
                f"{path}:{line}: document id {doc_id!r} is already used at line {first_line[doc_id]}; "
                "fix: give each document its own id"
            )
        first_line[doc_id] = line
        documents.append((doc_id, record["text"]))
    if not any(text.strip() for _, text in documents):
        raise ConfigError(f"{path}: the corpus has no document with text; fix: add {{id, text}} records")
    return documents


def _is_id(value: object) -> bool:
    """A document id: text or a whole number (a null, boolean or mapping would be matched as Python's text)."""
    return (isinstance(value, str) and bool(value.strip())) or (isinstance(value, int) and not isinstance(value, bool))


def _load_folder(path: Path) -> list[tuple[str, str]]:
    """A folder's .txt/.md documents; empty files are skipped, and files that are not UTF-8 text are skipped
    with a warning (a stray binary file should not stop a run); a folder with none left is an error."""
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".txt", ".md") and p.is_file())
    if not files:
        raise ConfigError(f"{path}: corpus folder has no .txt or .md files")
    root, documents, unreadable = path.resolve(), [], []
    for file in files:
        # the task folder must hold its corpus (load_task checked the folder itself): no links out of it
        if not file.resolve().is_relative_to(root):
            raise ConfigError(
                f"{file}: a link to {file.resolve()}, outside the corpus folder {path}; "
                "fix: copy the document into the folder"
            )
        data = file.read_bytes()
        try:
            text = data.decode("utf-8-sig") if b"\0" not in data else None
        except UnicodeDecodeError:
            text = None
        if text is None:
            unreadable.append(file)
        elif text.strip():
            documents.append((str(file.relative_to(path).with_suffix("")), text))
    if not documents:
        raise ConfigError(
            f"{path}: corpus folder has no .txt or .md file with text ({len(files)} empty or not "
            "UTF-8); fix: add UTF-8 text documents"
        )
    if unreadable:
        warnings.warn(
            f"{path}: skipped {len(unreadable)} corpus file(s) that are not UTF-8 text, e.g. {unreadable[0].name}",
            ConfigWarning,
            stacklevel=2,
        )
    return documents


def chunk_documents(documents: Sequence[tuple[str, str]], size: int, overlap: int) -> list[Chunk]:
    """Split each document into windows of `size` words that share `overlap` words with the previous one.

    Words, not model tokens: the index must not depend on which model reads the passages.
    """
    if not 0 <= overlap < size:
        raise ValueError(f"chunk_overlap ({overlap}) must be at least 0 and smaller than chunk_size ({size})")
    chunks = []
    for doc_id, text in documents:
        words = text.split()
        for start in range(0, max(len(words) - overlap, 1), size - overlap):
            chunks.append(Chunk(doc_id, " ".join(words[start : start + size])))
    return chunks


class BM25Retriever:
    """Lexical retrieval with bm25s (Lucene-style BM25, English stopwords removed)."""

    name = "bm25"

    def __init__(self, chunks: Sequence[Chunk], cache_dir: Path | None = None):
        import bm25s

        if cache_dir is not None and (cache_dir / "params.index.json").is_file():
            self.index = bm25s.BM25.load(str(cache_dir))
            self.loaded = True
            return
        self.index = bm25s.BM25()
        self.index.index(
            bm25s.tokenize([c.text for c in chunks], stopwords="en", show_progress=False), show_progress=False
        )
        self.loaded = False
        if cache_dir is not None:  # saved beside, then renamed: a crash never leaves half an index
            tmp = cache_dir.with_name(cache_dir.name + ".tmp")
            self.index.save(str(tmp))
            os.replace(tmp, cache_dir)

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        import bm25s

        tokens = bm25s.tokenize(list(queries), stopwords="en", return_ids=False, show_progress=False)
        k = min(k, self.index.scores["num_docs"])
        ids, _ = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        return ids.tolist()


class DenseRetriever:
    """Embedding retrieval with sentence-transformers: cosine similarity of normalised embeddings."""

    name = "dense"

    def __init__(self, chunks: Sequence[Chunk], model_name: str, device: str, cache_dir: Path | None = None):
        from sentence_transformers import SentenceTransformer

        self.encoder = SentenceTransformer(embedding_model_path(model_name), device=device)
        cached = cache_dir / "embeddings.npy" if cache_dir is not None else None
        self.loaded = cached is not None and cached.is_file()
        if cached is not None and self.loaded:
            self.embeddings = np.load(cached)
        else:
            self.embeddings = self._encode([c.text for c in chunks])
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)  # cache_dir
                tmp = cached.with_name("embeddings.tmp.npy")
                np.save(tmp, self.embeddings)
                os.replace(tmp, cached)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        ).astype(np.float32)

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        scores = self._encode(queries) @ self.embeddings.T
        return np.argsort(-scores, axis=1, kind="stable")[:, :k].tolist()


class HybridRetriever:
    """Reciprocal rank fusion of BM25 and dense rankings: score = sum of 1 / (RRF_K + rank)."""

    name = "hybrid"

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, depth: int = 50):
        self.parts, self.depth = (bm25, dense), depth
        self.loaded = bm25.loaded and dense.loaded

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        rankings = [part.search(queries, self.depth) for part in self.parts]
        fused = []
        for per_query in zip(*rankings):
            scores: dict[int, float] = {}
            for ranking in per_query:
                for rank, index in enumerate(ranking):
                    scores[index] = scores.get(index, 0.0) + 1.0 / (RRF_K + rank + 1)
            fused.append(sorted(scores, key=lambda i: (-scores[i], i))[:k])
        return fused


# A retriever kind: (chunks, embedding model, device, cache(part, *extra) -> folder | None) -> retriever.
# One registration adds a `retrieval.retriever:` value for recipes.
RETRIEVERS: Registry[Callable] = Registry("retriever")
RETRIEVERS.add("bm25", lambda chunks, model, device, cache: BM25Retriever(chunks, cache("bm25")))
RETRIEVERS.add(
    "dense", lambda chunks, model, device, cache: DenseRetriever(chunks, model, device, cache("dense", model))
)
RETRIEVERS.add(
    "hybrid",
    lambda chunks, model, device, cache: HybridRetriever(  # reciprocal rank fusion of both
        BM25Retriever(chunks, cache("bm25")), DenseRetriever(chunks, model, device, cache("dense", model))
    ),
)


def build_retriever(kind: str, chunks: Sequence[Chunk], *, embedding_model: str, device: str, cache_root: Path | None):
    """A retriever of `kind` over chunks, loaded from cache_root/<hash> when that index was built before."""

    def cache(part: str, *extra: str) -> Path | None:
        return cache_root / index_key(chunks, part, *extra) if cache_root is not None else None

    if kind not in RETRIEVERS:
        raise ValueError(RETRIEVERS.unknown(kind))
    return RETRIEVERS.get(kind)(chunks, embedding_model, device, cache)


def index_key(chunks: Sequence[Chunk], *parts: str) -> str:
    """A hash of the chunks (ids and texts) and whatever else decides the index (retriever, model)."""
    digest = hashlib.sha256(json.dumps([parts, [(c.doc_id, c.text) for c in chunks]]).encode())
    return f"{parts[0]}-{digest.hexdigest()[:16]}"


def recall_at_k(gold: Sequence[str], retrieved_docs: Sequence[str]) -> float:
    """Share of the gold documents found among the retrieved chunks' documents."""
    return len(set(gold) & set(retrieved_docs)) / len(set(gold))
