"""Corpus loading, chunking, the three retrievers on a hand-made corpus, recall@k and prompt assembly."""

import json

import pytest

from harness import retrieval
from harness.config import RetrievalSettings
from harness.retrieval import Chunk
from harness.tasks import Example
from harness.techniques.base import Index
from harness.techniques.rag import Augmenter

CORPUS = {
    "volcano": "A volcano erupts when magma rises through the crust and lava flows down the mountain slopes.",
    "bread": "To bake bread, knead flour, water, yeast and salt, let the dough rise, then bake it in a hot oven.",
    "chess": "In chess the knight moves in an L shape and the bishop moves diagonally across the board.",
    "tides": "Ocean tides are caused by the gravitational pull of the moon and the sun on the sea.",
}
QUERIES = {  # query -> the document that answers it (the dense ones share few words with it)
    "what makes lava flow from a volcano": "volcano",
    "how do I bake bread with yeast": "bread",
    "which chess piece moves diagonally": "chess",
    "why does the moon cause ocean tides": "tides",
}


def chunks() -> list[Chunk]:
    return [Chunk(doc_id, text) for doc_id, text in CORPUS.items()]


def test_corpus_loads_from_folder_and_jsonl(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.md").write_text("alpha text")
    (tmp_path / "docs" / "sub" / "b.txt").write_text("beta text")
    (tmp_path / "docs" / "ignored.bin").write_text("x")
    assert retrieval.load_corpus(tmp_path / "docs") == [("a", "alpha text"), ("sub/b", "beta text")]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"id": 7, "text": "seven"}) + "\n" + json.dumps({"text": "no id"}) + "\n")
    with pytest.raises(retrieval.ConfigError, match=r"c\.jsonl:2: each corpus record needs an 'id'"):
        retrieval.load_corpus(jsonl)


def test_chunks_have_the_size_and_overlap_asked_for():
    text = " ".join(f"w{i}" for i in range(25))
    pieces = retrieval.chunk_documents([("d", text), ("short", "just three words")], size=10, overlap=3)
    words = [c.text.split() for c in pieces if c.doc_id == "d"]
    assert [len(w) for w in words] == [10, 10, 10, 4]
    assert words[0][-3:] == words[1][:3]  # consecutive chunks share `overlap` words
    assert words[-1][-1] == "w24"  # nothing is lost at the end
    assert [c.text for c in pieces if c.doc_id == "short"] == ["just three words"]
    with pytest.raises(ValueError, match="chunk_overlap"):
        retrieval.chunk_documents([("d", text)], size=5, overlap=5)


@pytest.mark.parametrize("kind", ["bm25", "dense", "hybrid"])
def test_each_retriever_ranks_the_right_document_first(kind, tmp_path):
    index = retrieval.build_retriever(
        kind, chunks(), embedding_model="all-MiniLM-L6-v2", device="cpu", cache_root=tmp_path
    )
    ranked = index.search(list(QUERIES), k=2)
    assert [chunks()[r[0]].doc_id for r in ranked] == list(QUERIES.values())
    assert all(len(r) == 2 and r[0] != r[1] for r in ranked)


def test_index_is_cached_by_corpus_hash(tmp_path):
    first = retrieval.build_retriever(
        "hybrid", chunks(), embedding_model="all-MiniLM-L6-v2", device="cpu", cache_root=tmp_path
    )
    again = retrieval.build_retriever(
        "hybrid", chunks(), embedding_model="all-MiniLM-L6-v2", device="cpu", cache_root=tmp_path
    )
    assert not first.loaded and again.loaded
    assert again.search(list(QUERIES), 3) == first.search(list(QUERIES), 3)
    changed = [*chunks()[:-1], Chunk("tides", "Tides rise and fall twice a day.")]
    assert not retrieval.build_retriever("bm25", changed, embedding_model="", device="cpu", cache_root=tmp_path).loaded


def test_recall_at_k():
    assert retrieval.recall_at_k(["a"], ["b", "a"]) == 1.0
    assert retrieval.recall_at_k(["a"], ["b", "c"]) == 0.0
    assert retrieval.recall_at_k(["a", "b"], ["b", "b", "x"]) == 0.5


class WordTokenizer:
    """One token per word: makes the budget arithmetic in the test exact."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}

    def decode(self, ids):
        return " ".join(ids)


def augment(budget: int, k: int = 3) -> str:
    settings = RetrievalSettings(k=k, context_tokens=budget, template="{passages}\n---\n{question}")
    index = Index(
        retrieval.build_retriever("bm25", chunks(), embedding_model="", device="cpu", cache_root=None),
        chunks(),
        0.0,
        False,
    )
    return Augmenter(settings, index, WordTokenizer())(Example("q", "how do I bake bread with yeast", "x"), "Q?")


def test_prompt_puts_ranked_passages_before_the_question_within_the_budget():
    prompt = augment(budget=1000)
    passages, question = prompt.split("\n---\n")
    assert question == "Q?"
    assert passages.startswith("[1] (bread) To bake bread") and passages.count("\n\n") == 2  # k=3 passages

    bread_words = len(CORPUS["bread"].split())
    passages = augment(budget=bread_words + 5).split("\n---\n")[0]
    assert passages == f"[1] (bread) {CORPUS['bread']}"  # the second passage does not fit: dropped whole

    passages = augment(budget=16).split("\n---\n")[0]  # a best passage over budget is cut, not dropped
    assert passages == "[1] (bread) " + " ".join(CORPUS["bread"].split()[:16])
