"""Every recommender by name: what ``--model NAME``, saved folders and configs refer to.

Example::

    model = make_model("ease", regularization=300.0)
"""

from __future__ import annotations

from typing import Any, Final

from tailorcast.errors import ConfigError, NotFoundError
from tailorcast.models.base import Recommender
from tailorcast.models.content import ContentRecommender
from tailorcast.models.ease import EASERecommender
from tailorcast.models.factorization import ALSRecommender, BPRRecommender
from tailorcast.models.hybrid import HybridRecommender
from tailorcast.models.itemknn import ItemKNNRecommender
from tailorcast.models.popularity import PopularityRecommender
from tailorcast.models.repeat import RepeatRecommender

__all__ = ["MODELS", "make_model"]

MODELS: Final[dict[str, type[Recommender[Any]]]] = {
    cls.name: cls
    for cls in (
        PopularityRecommender,
        ItemKNNRecommender,
        EASERecommender,
        ALSRecommender,
        BPRRecommender,
        ContentRecommender,
        HybridRecommender,
        RepeatRecommender,
    )
}


def make_model(name: str, **params: Any) -> Recommender[Any]:
    """A new, unfitted model of the family ``name`` with the given hyperparameters.

    Raises:
        NotFoundError: no model of that name.
        ConfigError: a parameter the model does not have (values are checked by ``fit``).
    """
    cls = MODELS.get(name)
    if cls is None:
        raise NotFoundError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    unknown = sorted(set(params) - set(cls.config_class.model_fields))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(cls.config_class.model_fields)}"
        )
    return cls(**params)
