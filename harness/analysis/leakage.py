"""Leakage between a task's splits: test (and validation) examples that the model may have seen already.

What is compared, and why:

- **The question, not the answer.** An example's key is its prompt text: instruction, context, input
  and choices, normalised (Unicode NFKC, lower case, punctuation dropped, whitespace collapsed). A
  question seen in training is seen whatever its answer; and a classification task's answers repeat by
  design, so comparing them would flag every example.
- **Exact** duplicates: equal keys. **Near** duplicates: Jaccard similarity of the keys' character
  5-gram sets at or above a threshold (0.85 by default). Character shingles, not word n-grams: task
  inputs are often a sentence long, where one changed word removes a third of a sentence's word
  trigrams but few of its character 5-grams. The default is measured on the bundled tasks: questions
  that differ in one content word ("How much does the Talvex L44 coffee grinder cost?" / "... weigh?")
  reach 0.82, the same message with a greeting or sign-off added 0.83 to 0.95.
  Pairs are found by prefix filtering (Chaudhuri et al. 2006; Bayardo et al. 2007: two sets with
  Jaccard >= t share a token among their first |s| - ceil(t|s|) + 1 rarest ones) and each candidate's
  similarity is computed exactly, so no pair at or above the threshold is missed (MinHash, e.g.
  datasketch, would estimate it, and datasketch is not a dependency).
- Pairs compared: test against train, test against validation, validation against train. The recipe's
  `eval.leakage` acts on test examples only; a validation leak is reported (it biases a search's choice).
- **Answers in the few-shot pool** (the train split, where few-shot prompts draw their shots): a test
  answer of at least `MIN_ANSWER_WORDS` words found verbatim (normalised, on word boundaries) in a
  train example's input or answer. Shorter answers recur by chance ("3 years" is the warranty of many
  products), and a classification task's answers are its labels, so neither is checked.
- **Questions in the corpus** (RAG tasks): a test question of at least `MIN_ANSWER_WORDS` words found
  verbatim in a corpus document together with its answer: the corpus holds the test set itself. A test
  answer alone in the corpus is not counted: that is what retrieval is meant to find.

Pure: examples and documents in, findings out; the caller loads the corpus (harness/screening.py).
"""

from __future__ import annotations

import bisect
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.tasks import Example

NEAR_THRESHOLD = 0.85  # Jaccard of character 5-gram sets; the recipe's eval.leakage.near_threshold
SHINGLE = 5  # characters per shingle
MIN_ANSWER_WORDS = 3  # shorter answers (a label, a number, a name) recur by chance
ACTIONS = ("warn", "exclude", "error")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalise(text: str) -> str:
    """Case, whitespace and punctuation removed from the comparison: 'Hi,  there!' == 'hi there'."""
    text = _PUNCTUATION.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(text.split())


def key(example: Example) -> str:
    """What two examples are compared on: their prompt text (not the answer), normalised; a conversation's
    earlier turns are part of its prompt."""
    turns = [text for _, text in example.history]
    return normalise(" ".join([example.instruction, example.context, *turns, example.input, example.choices]))


def shingles(text: str) -> frozenset[str]:
    """The text's character 5-grams (the whole text when shorter)."""
    if len(text) <= SHINGLE:
        return frozenset([text]) if text else frozenset()
    return frozenset(text[i : i + SHINGLE] for i in range(len(text) - SHINGLE + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared) if a or b else 1.0


@dataclass(frozen=True)
class Match:
    id: str  # the example found again (of the later split: test, or validation against train)
    other: str  # the example it matches, in the other split
    kind: str  # exact | near
    similarity: float  # 1.0 for an exact match

    def as_dict(self) -> dict:
        return {"id": self.id, "other": self.other, "kind": self.kind, "similarity": round(self.similarity, 3)}


def find_matches(
    examples: Sequence[Example], others: Sequence[Example], threshold: float = NEAR_THRESHOLD
) -> list[Match]:
    """Each example of `examples` whose key equals (exact) or nearly equals (near) one of `others`', with
    its closest match: exact before near, the most similar near one. Examples with an empty key are skipped."""
    exact: dict[str, str] = {}
    for other in others:
        exact.setdefault(key(other), other.id)
    matches, rest = [], []
    for example in examples:
        text = key(example)
        if not text:
            continue
        if text in exact:
            matches.append(Match(example.id, exact[text], "exact", 1.0))
        else:
            rest.append(example)
    near = _near_pairs([shingles(key(e)) for e in rest], [shingles(key(o)) for o in others], threshold)
    for index, (other_index, similarity) in sorted(near.items()):
        matches.append(Match(rest[index].id, others[other_index].id, "near", similarity))
    return matches


def _near_pairs(queries: list[frozenset[str]], corpus: list[frozenset[str]], threshold: float) -> dict[int, tuple]:
    """query index -> (corpus index, similarity) of its most similar corpus set with Jaccard >= threshold,
    by prefix filtering: tokens ordered rarest first, each set indexed by its prefix of
    |s| - ceil(threshold |s|) + 1 tokens; two sets at or above the threshold share a prefix token."""
    frequency = Counter(token for sets in (queries, corpus) for s in sets for token in s)

    def prefix(s: frozenset[str]) -> list[str]:
        ordered = sorted(s, key=lambda token: (frequency[token], token))
        return ordered[: len(s) - math.ceil(threshold * len(s)) + 1]

    index: dict[str, list[int]] = defaultdict(list)
    for position, s in enumerate(corpus):
        for token in prefix(s):
            index[token].append(position)
    best: dict[int, tuple[int, float]] = {}
    for position, s in enumerate(queries):
        if not s:
            continue
        candidates = {c for token in prefix(s) for c in index.get(token, ())}
        for candidate in sorted(candidates):
            other = corpus[candidate]
            if not threshold * len(s) <= len(other) <= len(s) / threshold:  # Jaccard <= min/max of the sizes
                continue
            similarity = jaccard(s, other)
            if similarity >= threshold and similarity > best.get(position, (0, 0.0))[1]:
                best[position] = (candidate, similarity)
    return best


def answers_in_pool(test: Sequence[Example], pool: Sequence[Example]) -> list[Match]:
    """Test examples whose answer (at least MIN_ANSWER_WORDS words) is found verbatim in a pool example's
    input or answer; `other` is the first such pool example."""
    texts = [f" {normalise(e.input + ' ' + e.output)} " for e in pool]
    starts = [0]
    for text in texts:
        starts.append(starts[-1] + len(text))
    joined = "".join(texts)
    found = []
    for example in test:
        answer = normalise(example.output)
        if len(example.output.split()) < MIN_ANSWER_WORDS:  # words as written: '1.3 kg' is two
            continue
        at = joined.find(f" {answer} ")
        if at >= 0:
            found.append(Match(example.id, pool[bisect.bisect_right(starts, at) - 1].id, "answer", 1.0))
    return found


def questions_in_corpus(test: Sequence[Example], documents: Sequence[tuple[str, str]]) -> list[Match]:
    """Test examples whose question (at least MIN_ANSWER_WORDS words) and answer both occur verbatim in one
    corpus document; `other` is that document's id."""
    texts = [(doc_id, f" {normalise(text)} ") for doc_id, text in documents]
    found = []
    for example in test:
        question, answer = normalise(example.input), normalise(example.output)
        if len(example.input.split()) < MIN_ANSWER_WORDS or not answer:
            continue
        doc = next((d for d, text in texts if f" {question} " in text and f" {answer} " in text), None)
        if doc is not None:
            found.append(Match(example.id, doc, "question", 1.0))
    return found


@dataclass
class Leakage:
    """What `find` found; `as_dict` is what a run's meta stores (meta['leakage'])."""

    threshold: float
    n_test: int
    n_validation: int
    test_in_train: list[Match] = field(default_factory=list)
    test_in_validation: list[Match] = field(default_factory=list)
    validation_in_train: list[Match] = field(default_factory=list)
    answers_in_pool: list[Match] = field(default_factory=list)  # empty for classification tasks
    questions_in_corpus: list[Match] = field(default_factory=list)  # empty without a corpus
    corpus_checked: bool = False
    answers_checked: bool = False

    @property
    def test_ids(self) -> list[str]:
        """Every test example found in any check, in first-found order."""
        groups = (self.test_in_train, self.test_in_validation, self.answers_in_pool, self.questions_in_corpus)
        return list(dict.fromkeys(m.id for group in groups for m in group))

    def as_dict(self) -> dict:
        return {
            "near_threshold": self.threshold,
            "compared": "prompt text (instruction, context, earlier turns, input, choices), normalised; "
            "near: Jaccard of "
            f"character {SHINGLE}-grams >= {self.threshold:g}",
            "n_test": self.n_test,
            "n_validation": self.n_validation,
            "test_in_train": [m.as_dict() for m in self.test_in_train],
            "test_in_validation": [m.as_dict() for m in self.test_in_validation],
            "validation_in_train": [m.as_dict() for m in self.validation_in_train],
            "answers_in_pool": [m.as_dict() for m in self.answers_in_pool] if self.answers_checked else None,
            "questions_in_corpus": [m.as_dict() for m in self.questions_in_corpus] if self.corpus_checked else None,
            "test_ids": self.test_ids,
            "checked": self.checked,
        }

    @property
    def checked(self) -> list[str]:
        """Which checks ran, in words."""
        done = ["test vs train"] + (["test vs validation", "validation vs train"] if self.n_validation else [])
        if self.answers_checked:
            done.append(f"test answers of {MIN_ANSWER_WORDS}+ words in the few-shot pool (train)")
        if self.corpus_checked:
            done.append("test questions with their answer in the corpus")
        return done


def find(
    train: Sequence[Example],
    validation: Sequence[Example],
    test: Sequence[Example],
    classification: bool,
    corpus: Sequence[tuple[str, str]] | None = None,
    threshold: float = NEAR_THRESHOLD,
) -> Leakage:
    """Every check above on one task's splits (validation empty when the recipe cuts none)."""
    return Leakage(
        threshold=threshold,
        n_test=len(test),
        n_validation=len(validation),
        test_in_train=find_matches(test, train, threshold),
        test_in_validation=find_matches(test, validation, threshold) if validation else [],
        validation_in_train=find_matches(validation, train, threshold) if validation else [],
        answers_in_pool=[] if classification else answers_in_pool(test, train),
        questions_in_corpus=questions_in_corpus(test, corpus) if corpus is not None else [],
        corpus_checked=corpus is not None,
        answers_checked=not classification,
    )


def _counted(matches: list[dict]) -> str:
    kinds = Counter(m["kind"] for m in matches)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))


def sentences(stored: dict) -> list[str]:
    """What a stored leakage report (meta['leakage']) found, one sentence per finding, e.g. '12 of 120
    test examples also appear in train (8 exact, 4 near).'; none when nothing was found."""
    n_test, n_validation = stored["n_test"], stored["n_validation"]
    lines = []
    for name, total, what, where in (
        ("test_in_train", n_test, "test examples", "in train"),
        ("test_in_validation", n_test, "test examples", "in validation"),
        ("validation_in_train", n_validation, "validation examples", "in train"),
    ):
        matches = stored.get(name) or []
        if matches:
            n = len(matches)
            lines.append(f"{n} of {total} {what} also {_verb(n)} {where} ({_counted(matches)}).")
    if stored.get("answers_in_pool"):
        n = len(stored["answers_in_pool"])
        lines.append(f"{n} of {n_test} test answers {_verb(n)} verbatim in the few-shot pool (train).")
    if stored.get("questions_in_corpus"):
        n = len(stored["questions_in_corpus"])
        lines.append(f"{n} of {n_test} test questions {_verb(n)} verbatim, with their answer, in a corpus document.")
    return lines


def _verb(n: int) -> str:
    return "appears" if n == 1 else "appear"
