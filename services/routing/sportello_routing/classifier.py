"""The learned model behind triage: TF-IDF over word and character n-grams into a linear
SVM (scikit-learn), calibrated so that a confidence of 0.8 is right about 8 times in 10.

Words decide most: their 1-2-grams are kept down to those seen once (a rare product or
error name is often the whole clue) and counted plainly. Character n-grams read what words
miss in tickets (typos, Italian inflections, error codes), at a smaller weight: at full
weight they drown the words on tickets that are already clean. The class weights are
balanced so that a rare category is not drowned by the general one. The measurements
behind these choices: ``bench/triage_quality.py`` and docs/performance.md.

A model is saved as plain arrays (``numpy.savez``, no pickle: a model read
from the database cannot run code) and predicts with one sparse product and one sigmoid
per class, well under a millisecond for a ticket.

No I/O: bytes in, bytes out; the service stores them and decides which model is used.
"""

from __future__ import annotations

import functools
import io
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.svm import LinearSVC

from sportello_routing.domain.learning import Quality, TrainingSet

FORMAT = 2
"""Bumped when the saved arrays change meaning; an older model is then trained again."""

_SHARED: dict[str, Any] = {"sublinear_tf": False, "strip_accents": "unicode", "lowercase": True,
                           "dtype": np.float32}
WORDS: dict[str, Any] = {**_SHARED, "analyzer": "word", "ngram_range": (1, 2)}
CHARACTERS: dict[str, Any] = {**_SHARED, "analyzer": "char_wb", "ngram_range": (2, 5)}


@dataclass(frozen=True)
class Settings:
    """How a head is trained. ``max_terms`` bounds each vocabulary and so the model's size
    (classes x 2 x max_terms weights); ``character_weight`` scales the character n-grams'
    features against the words' while the SVM learns."""

    max_terms: int = 400_000
    min_df: int = 1
    c: float = 0.3
    folds: int = 3
    character_weight: float = 0.3


class UnusableModel(ValueError):
    """Saved by another format, or not a model at all."""


@dataclass
class Head:
    """One guess (the category, or the first-level group): its classes, vocabularies and
    weights, and the sigmoid per class that turns a score into a confidence."""

    classes: np.ndarray
    words: TfidfVectorizer
    characters: TfidfVectorizer
    coef: np.ndarray
    intercept: np.ndarray
    calibration: np.ndarray
    """Per score column, (a, b) of ``1 / (1 + exp(a * score + b))``."""

    def __post_init__(self) -> None:
        # Laid out a row per term (``coef`` stays classes x terms, as a view): a ticket's few
        # terms are then a few whole rows to read, not a scattered column in every class.
        self._by_term = np.ascontiguousarray(self.coef.T)
        self.coef = self._by_term.T

    def features(self, texts: Sequence[str]) -> sp.csr_matrix:
        return sp.hstack([self.words.transform(texts), self.characters.transform(texts)],
                         format="csr")

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """As scikit-learn's calibrated classifier computes them, without its per-call
        checks: for one ticket those cost more than the arithmetic."""
        return self._calibrated(self.features(texts) @ self.coef.T + self.intercept)

    def _calibrated(self, scores: np.ndarray) -> np.ndarray:
        a, b = self.calibration[:, 0], self.calibration[:, 1]
        calibrated = 1.0 / (1.0 + np.exp(a * scores + b))
        if len(self.classes) == 2:
            return np.column_stack([1.0 - calibrated[:, 0], calibrated[:, 0]])
        total = calibrated.sum(axis=1, keepdims=True)
        uniform = np.full_like(calibrated, 1.0 / len(self.classes))
        shares: np.ndarray = np.divide(calibrated, total, out=uniform, where=total != 0)
        return shares

    def predict(self, text: str) -> tuple[str, float]:
        """One ticket: the same numbers as ``probabilities``, by a shorter road (the
        vectorizers' own ``transform`` spends a millisecond checking one document)."""
        scores = self.intercept.astype(np.float64)
        offset = 0
        for analyze, vectorizer in self._analyzers:
            indices, values = _tfidf(analyze(text), vectorizer.vocabulary_, vectorizer.idf_)
            if len(indices):
                scores = scores + values @ self._by_term[offset + indices]
            offset += len(vectorizer.vocabulary_)
        row = self._calibrated(scores[np.newaxis, :])[0]
        best = int(row.argmax())
        return str(self.classes[best]), float(row[best])

    @functools.cached_property
    def _analyzers(self) -> list[tuple[Callable[[str], list[str]], TfidfVectorizer]]:
        return [(v.build_analyzer(), v) for v in (self.words, self.characters)]

    def predict_many(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        return [str(c) for c in self.classes[self.probabilities(texts).argmax(axis=1)]]

    @property
    def terms(self) -> int:
        return int(self.coef.shape[1])


def _tfidf(terms: list[str], vocabulary: Mapping[str, int], idf: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """A document's known terms and their weights as the vectorizer computes them (plain
    counts, ``sublinear_tf`` off): count times the term's idf, scaled to unit length."""
    counts = Counter(index for term in terms if (index := vocabulary.get(term)) is not None)
    if not counts:
        return np.empty(0, dtype=np.intp), np.empty(0)
    indices = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
    values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) * idf[indices]
    norm = float(np.sqrt(values @ values))
    return indices, (values / norm if norm else values)


def _vectorizer(params: Mapping[str, Any], settings: Settings) -> TfidfVectorizer:
    return TfidfVectorizer(**params, min_df=settings.min_df, max_features=settings.max_terms)


def train_head(training: TrainingSet, settings: Settings = Settings()) -> Head:
    texts, labels = list(training.texts), list(training.labels)
    words = _vectorizer(WORDS, settings)
    characters = _vectorizer(CHARACTERS, settings)
    weight = settings.character_weight
    features = sp.hstack([words.fit_transform(texts), weight * characters.fit_transform(texts)],
                         format="csr")
    smallest = min(Counter(labels).values())
    calibrated = CalibratedClassifierCV(
        LinearSVC(C=settings.c, class_weight="balanced", random_state=0),
        method="sigmoid", cv=max(2, min(settings.folds, smallest)), ensemble=False,
    ).fit(features, labels)
    fitted = calibrated.calibrated_classifiers_[0]
    svm: LinearSVC = fitted.estimator
    calibration = np.array([[c.a_, c.b_] for c in fitted.calibrators], dtype=np.float64)
    # The weight goes into the coefficients: a guess then multiplies the plain features and
    # gets the scores the SVM learned with, and the saved model needs no extra number.
    coef = svm.coef_.astype(np.float32)
    coef[:, len(words.vocabulary_):] *= weight
    return Head(np.asarray(calibrated.classes_).astype(str), words, characters,
                coef, svm.intercept_.astype(np.float32), calibration)


def measure(head: Head, held_back: TrainingSet) -> Quality:
    """Accuracy, macro-F1 and F1 per class on tickets the head did not learn from. A
    class the head does not know counts as missed, as it would in use."""
    guessed = head.predict_many(list(held_back.texts))
    truth = list(held_back.labels)
    labels = sorted(set(truth) | set(guessed))
    per_class = f1_score(truth, guessed, labels=labels, average=None, zero_division=0)
    return Quality(
        accuracy=round(float(accuracy_score(truth, guessed)), 4),
        macro_f1=round(float(f1_score(truth, guessed, average="macro", zero_division=0)), 4),
        examples=len(truth),
        per_class={label: round(float(f), 4) for label, f in zip(labels, per_class,
                                                                 strict=True)},
    )


@dataclass
class TriageModel:
    """The heads a model has (a head is left out when its lessons name fewer than two
    classes)."""

    heads: dict[str, Head]

    def predict(self, head: str, text: str) -> tuple[str, float] | None:
        found = self.heads.get(head)
        return found.predict(text) if found is not None else None

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"format": np.array([FORMAT])}
        for name, head in self.heads.items():
            arrays[f"{name}.classes"] = _joined(list(head.classes))
            for part, vectorizer in (("words", head.words), ("characters", head.characters)):
                vocabulary = vectorizer.vocabulary_
                arrays[f"{name}.{part}.terms"] = _joined(sorted(vocabulary,
                                                                key=vocabulary.__getitem__))
                arrays[f"{name}.{part}.idf"] = vectorizer.idf_.astype(np.float32)
            arrays[f"{name}.coef"] = head.coef
            arrays[f"{name}.intercept"] = head.intercept
            arrays[f"{name}.calibration"] = head.calibration
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TriageModel:
        try:
            saved = np.load(io.BytesIO(data), allow_pickle=False)
            if int(saved["format"][0]) != FORMAT:
                raise UnusableModel(f"saved in format {int(saved['format'][0])}, "
                                    f"this routing reads {FORMAT}")
            names = sorted({key.split(".")[0] for key in saved.files if "." in key})
            heads = {}
            for name in names:
                vectorizers = []
                for part, params in (("words", WORDS), ("characters", CHARACTERS)):
                    terms = _split(saved[f"{name}.{part}.terms"])
                    vectorizer = TfidfVectorizer(
                        **params, vocabulary={t: i for i, t in enumerate(terms)})
                    vectorizer.idf_ = saved[f"{name}.{part}.idf"].astype(np.float64)
                    vectorizers.append(vectorizer)
                heads[name] = Head(np.array(_split(saved[f"{name}.classes"])),
                                   vectorizers[0], vectorizers[1], saved[f"{name}.coef"],
                                   saved[f"{name}.intercept"], saved[f"{name}.calibration"])
        except UnusableModel:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise UnusableModel(f"not a triage model: {exc}") from exc
        return cls(heads)


def _joined(strings: Sequence[str]) -> np.ndarray:
    """Terms as one UTF-8 block: no term holds a newline (both analyzers split on white
    space), and a byte array needs no pickle to load."""
    return np.frombuffer("\n".join(strings).encode(), dtype=np.uint8)


def _split(block: np.ndarray) -> list[str]:
    return block.tobytes().decode().split("\n")


@dataclass(frozen=True)
class Trained:
    """What a training run hands back to the service."""

    model: bytes
    quality: dict[str, Quality]
    current_quality: dict[str, Quality] | None
    lessons: dict[str, int]
    seconds: float


def train_and_compare(training: Mapping[str, TrainingSet], held_back: Mapping[str, TrainingSet],
                      current: bytes | None, settings: Settings = Settings()) -> Trained:
    """Train a head for each training set, measure it and the current model on the same
    held-back tickets. Runs in a worker process: it takes seconds of CPU."""
    started = time.perf_counter()
    model = TriageModel({head: train_head(lessons, settings)
                         for head, lessons in training.items()})
    quality = {head: measure(model.heads[head], held_back[head])
               for head in model.heads if held_back.get(head) and held_back[head].texts}
    current_quality = None
    if current is not None:
        try:
            in_use = TriageModel.from_bytes(current)
        except UnusableModel:
            in_use = None  # another format: anything trained now is better than nothing
        if in_use is not None:
            current_quality = {head: measure(in_use.heads[head], held_back[head])
                               for head in in_use.heads
                               if held_back.get(head) and held_back[head].texts}
    return Trained(model.to_bytes(), quality, current_quality,
                   {head: len(lessons.texts) for head, lessons in training.items()},
                   round(time.perf_counter() - started, 3))
