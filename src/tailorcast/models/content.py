"""Content-based recommendations: items described by their attributes, customers by what they
chose.

Every item becomes one sparse vector of three blocks, each L2-normalised on its own:

- ``text``: TF-IDF (sublinear tf) over the ``text_columns`` (title, tags, description; list
  values such as tag lists are joined);
- ``attributes``: one-hot of the ``attribute_columns`` (category, brand; a multi-word brand
  stays one feature);
- ``price``: the item's price percentile ``p`` (rank of ``log1p(price)``, scaled so the
  cheapest is 0 and the dearest 1) as the angle
  ``theta = p * pi / 2``, i.e. the pair ``(cos theta, sin theta)``. The dot product of two
  items is then ``cos(theta_i - theta_j)``: 1 at the same price level, falling to 0 between
  the cheapest and the dearest. (A centred, scaled price as one column would make two cheap
  items "similar" and a mid-priced item similar to nothing.)

Block ``b`` is multiplied by ``sqrt(weight_b)`` and the whole row is L2-normalised, so the
cosine of two items is the weighted mean of the blocks' cosines. A customer's profile is the
sum of their history items' vectors weighted by the training view's matrix (event-type
weights, and recency when the view has ``half_life_days``); an item's score is the cosine of
profile and item vector. Items without events are scored like any other: this is how new
items reach customers (cold start of items).

Without any usable attribute (no text, category, brand or price column with values) each
item only resembles itself: scores are 0 for every item the customer did not touch, so
recommendations fall back to popularity (the tie-break) and explanations to "popular right
now". The model logs this instead of failing, so a hybrid that includes it still trains.

Example::

    ContentRecommender(text_weight=1.0, attribute_weight=1.0, price_weight=0.5).fit(inter)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from tailorcast.data.interactions import Interactions
from tailorcast.errors import ConfigError
from tailorcast.models.base import Floats, Ints, Recommender, RecommenderConfig

__all__ = ["ContentConfig", "ContentRecommender", "item_vectors"]

logger = logging.getLogger(__name__)

#: Separator of column lists in the config (commas separate parameters in model specs).
COLUMN_SEPARATOR: Final = "+"
#: Feature name prefix of the identity fallback (items without usable attributes).
_IDENTITY: Final = "item_id="


class ContentConfig(RecommenderConfig):
    """Hyperparameters of :class:`ContentRecommender`."""

    text_columns: str = "title+tags+description"
    """Item columns whose text feeds the TF-IDF block, joined by ``+``; absent ones are
    skipped."""
    attribute_columns: str = "category+brand"
    """Item columns one-hot encoded (one feature per distinct value), joined by ``+``."""
    text_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    attribute_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    price_weight: float = Field(default=0.5, ge=0, allow_inf_nan=False)
    max_tokens: int = Field(default=50_000, ge=1)
    """Vocabulary size of the TF-IDF block (most frequent tokens)."""
    min_token_items: int = Field(default=1, ge=1)
    """A token must occur in at least this many items (TF-IDF ``min_df``)."""


class ContentRecommender(Recommender[ContentConfig]):
    """Recommends items whose attributes and text resemble the customer's history."""

    name: ClassVar[str] = "content"
    config_class: ClassVar[type[RecommenderConfig]] = ContentConfig
    similar_reason: ClassVar[str] = "similar to "
    places_new_items: ClassVar[bool] = False  # scores new items by their attributes itself

    item_vectors_: sp.csr_matrix
    """``(n_items, n_features)`` float32 CSR, rows of unit length (or zero: nothing known)."""
    feature_names_: npt.NDArray[np.str_]
    """Column names of ``item_vectors_`` (``tok_<word>``, ``category=<value>``,
    ``price_cos`` / ``price_sin``); ``item_id=<id>``, one per item, in the identity
    fallback."""

    def __init__(
        self,
        *,
        text_columns: str = "title+tags+description",
        attribute_columns: str = "category+brand",
        text_weight: float = 1.0,
        attribute_weight: float = 1.0,
        price_weight: float = 0.5,
        max_tokens: int = 50_000,
        min_token_items: int = 1,
    ) -> None:
        self.text_columns = text_columns
        self.attribute_columns = attribute_columns
        self.text_weight = text_weight
        self.attribute_weight = attribute_weight
        self.price_weight = price_weight
        self.max_tokens = max_tokens
        self.min_token_items = min_token_items

    @property
    def uses_identity(self) -> bool:
        """True when no item attribute was usable (each item only resembles itself)."""
        self._check_fitted()
        return self._identity

    def _learn(
        self, interactions: Interactions, matrix: sp.csr_matrix, config: ContentConfig
    ) -> dict[str, npt.NDArray[Any]]:
        vectors, names = item_vectors(interactions.items, config)
        return {
            "vector_indptr": vectors.indptr.astype(np.int64),
            "vector_indices": vectors.indices.astype(np.int32),
            "vector_data": vectors.data.astype(np.float32),
            "feature_names": np.asarray(names, dtype=str),
            # Block features are tok_*, <column>=* or price_*: never "item_id=" (the index).
            "identity": np.asarray([bool(names) and names[0].startswith(_IDENTITY)]),
        }

    def _load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        names = np.asarray(state["feature_names"], dtype=str)
        indices = np.asarray(state["vector_indices"], dtype=np.int32)
        if indices.size and (indices.min() < 0 or indices.max() >= len(names)):
            raise ValueError("vector_indices point past the feature names")
        vectors = sp.csr_matrix(
            (
                np.asarray(state["vector_data"], dtype=np.float32),
                indices,
                np.asarray(state["vector_indptr"], dtype=np.int64),
            ),
            shape=(len(self.item_ids_), len(names)),
        )
        self._identity = bool(np.asarray(state["identity"]).any())
        self.item_vectors_ = vectors
        self.feature_names_ = names
        self._by_feature = sp.csr_matrix(vectors.T)  # features x items, for profile @ V^T
        nnz = vectors.nnz / max(vectors.shape[0], 1)
        self._row_cost = max(1, int(np.ceil(nnz)))

    def _dump_state(self) -> dict[str, npt.NDArray[Any]]:
        v = self.item_vectors_
        return {
            "vector_indptr": v.indptr.astype(np.int64),
            "vector_indices": v.indices.astype(np.int32),
            "vector_data": v.data.astype(np.float32),
            "feature_names": self.feature_names_,
            "identity": np.asarray([self._identity]),
        }

    def profiles(self, user_idx: Ints) -> sp.csr_matrix:
        """Unit-length taste profiles ``(len(user_idx), n_features)`` of customers (rows of
        zeros for customers without a described history)."""
        raw = sp.csr_matrix(self.user_items_[user_idx] @ self.item_vectors_, dtype=np.float64)
        norms = np.sqrt(np.asarray(raw.multiply(raw).sum(axis=1)).ravel())
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return sp.csr_matrix(sp.diags(scale) @ raw)

    def _score(self, user_idx: Ints) -> npt.NDArray[np.float32]:
        scores = (self.profiles(user_idx) @ self._by_feature).toarray()
        return np.asarray(scores, dtype=np.float32)

    def _item_scores(self, item_idx: Ints) -> npt.NDArray[np.float32]:
        scores = (self.item_vectors_[item_idx] @ self._by_feature).toarray()
        return np.asarray(scores, dtype=np.float32)

    def _contributions(self, weights: Floats, history: Ints, items: Ints) -> npt.NDArray[Any]:
        v = self.item_vectors_
        cosine = np.asarray(v[history].multiply(v[items]).sum(axis=1), dtype=np.float64).ravel()
        return weights.astype(np.float64) * cosine

    def _pair_cost(self) -> int:
        return self._row_cost


def item_vectors(
    items: pd.DataFrame, config: ContentConfig | None = None
) -> tuple[sp.csr_matrix, list[str]]:
    """Sparse item vectors (float32 CSR, unit rows) and their feature names, from an item
    attributes frame in catalogue order (``Interactions.items``). See the module docstring.

    >>> items = pd.DataFrame({"category": ["tea", "tea", "mugs"], "title": ["green tea",
    ...     "black tea", "big mug"]}, index=pd.Index(["a", "b", "c"], name="item_id"))
    >>> vectors, names = item_vectors(items)
    >>> float((vectors[0] @ vectors[1].T).toarray()[0, 0]) > 0.5
    True

    Raises:
        ConfigError: every block weight is 0, or a column list is malformed.
    """
    cfg = config or ContentConfig()
    weights = (cfg.text_weight, cfg.attribute_weight, cfg.price_weight)
    if not any(w > 0 for w in weights):
        raise ConfigError(
            "text_weight, attribute_weight and price_weight are all 0: at least one must be > 0"
        )
    n = len(items)
    blocks: list[sp.csr_matrix] = []
    names: list[str] = []
    text_cols = _column_list(cfg.text_columns, "text_columns")
    attr_cols = _column_list(cfg.attribute_columns, "attribute_columns")
    found: list[tuple[float, tuple[sp.csr_matrix, list[str]] | None]] = []
    if cfg.text_weight > 0:
        found.append((cfg.text_weight, _text_block(items, text_cols, cfg)))
    if cfg.attribute_weight > 0:
        found.append((cfg.attribute_weight, _attribute_block(items, attr_cols)))
    if cfg.price_weight > 0:
        found.append((cfg.price_weight, _price_block(items)))
    for weight, block_and_names in found:
        if block_and_names is None:
            continue
        block, block_names = block_and_names
        blocks.append(sp.csr_matrix(_unit_rows(block) * np.sqrt(weight)))
        names.extend(block_names)
    if not blocks:
        logger.warning(
            "no usable item attributes (looked for %s, %s and price): content similarity "
            "falls back to item identity, so recommendations follow popularity",
            ", ".join(text_cols) or "no text column",
            ", ".join(attr_cols) or "no attribute column",
        )
        identity = sp.identity(n, dtype=np.float32, format="csr")
        return sp.csr_matrix(identity), [f"{_IDENTITY}{x}" for x in items.index.tolist()]
    vectors = _unit_rows(sp.csr_matrix(sp.hstack(blocks, format="csr"), dtype=np.float64))
    vectors = sp.csr_matrix(vectors, dtype=np.float32)
    vectors.eliminate_zeros()
    vectors.sort_indices()
    return vectors, names


# -- blocks -------------------------------------------------------------------------------------
def _text_block(
    items: pd.DataFrame, columns: list[str], cfg: ContentConfig
) -> tuple[sp.csr_matrix, list[str]] | None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    present = [c for c in columns if c in items.columns]
    if not present or len(items) == 0:
        return None
    texts = [_texts(items[c]) for c in present]
    documents = [" ".join(parts) for parts in zip(*texts, strict=True)]
    vectorizer = TfidfVectorizer(
        max_features=cfg.max_tokens,
        min_df=cfg.min_token_items,
        sublinear_tf=True,
        dtype=np.float64,
    )
    analyze = vectorizer.build_analyzer()
    if not any(analyze(doc) for doc in documents):
        return None
    try:
        matrix = vectorizer.fit_transform(documents)
    except ValueError:  # min_df left no token
        return None
    vocabulary = [f"tok_{t}" for t in vectorizer.get_feature_names_out().tolist()]
    return sp.csr_matrix(matrix), vocabulary


def _attribute_block(
    items: pd.DataFrame, columns: list[str]
) -> tuple[sp.csr_matrix, list[str]] | None:
    n = len(items)
    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    names: list[str] = []
    for column in columns:
        if column not in items.columns:
            continue
        values = items[column]
        present = values.notna().to_numpy().copy()
        text = values.astype(object).where(present, "").astype(str).str.strip()
        present &= (text != "").to_numpy()
        codes, uniques = pd.factorize(text.where(present, None), sort=True)
        codes = np.asarray(codes, dtype=np.int64)
        hit = codes >= 0
        rows.append(np.flatnonzero(hit).astype(np.int64))
        cols.append(codes[hit] + len(names))
        names.extend(f"{column}={u}" for u in uniques.tolist())
    if not names:
        return None
    row = np.concatenate(rows)
    col = np.concatenate(cols)
    matrix = sp.csr_matrix((np.ones(len(row)), (row, col)), shape=(n, len(names)))
    return matrix, names


def _price_block(items: pd.DataFrame) -> tuple[sp.csr_matrix, list[str]] | None:
    if "price" not in items.columns or not pd.api.types.is_numeric_dtype(items["price"].dtype):
        return None
    price = items["price"].to_numpy(dtype=np.float64, na_value=np.nan)
    known = np.isfinite(price)
    logged = np.log1p(np.clip(price[known], 0.0, None))
    if np.unique(logged).size < 2:  # one price level says nothing about similarity
        return None
    # Percentile of each known price (ties share their mean rank), cheapest 0, dearest 1.
    rank = pd.Series(logged).rank(method="average").to_numpy()
    theta = (rank - rank.min()) / (rank.max() - rank.min()) * (np.pi / 2.0)
    dense = np.zeros((len(items), 2))
    dense[known, 0] = np.cos(theta)
    dense[known, 1] = np.sin(theta)
    return sp.csr_matrix(dense), ["price_cos", "price_sin"]


# -- helpers ------------------------------------------------------------------------------------
def _column_list(text: str, what: str) -> list[str]:
    parts = [p.strip() for p in text.split(COLUMN_SEPARATOR)] if text.strip() else []
    if any(not p for p in parts):
        raise ConfigError(f"{what}={text!r}: empty column name (columns are joined by '+')")
    return parts


def _unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(matrix, dtype=np.float64)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ m)


def _texts(series: pd.Series) -> list[str]:
    """One string per row; list-like values (tags) are joined, missing ones are empty."""
    out: list[str] = []
    for value in series.to_numpy(dtype=object):
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list | tuple | set | np.ndarray):
            out.append(" ".join(str(v) for v in value))
        elif value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            out.append("")
        else:
            out.append(str(value))
    return out
