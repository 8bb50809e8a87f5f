"""Models: importing this package registers every model in :data:`REGISTRY`."""

from dglmm.models import lightgcn, mf, micro, ngcf, vbpr  # noqa: F401  (registration side effects)
from dglmm.models.base import REGISTRY, Recommender, Representations, make_config, register

__all__ = ["REGISTRY", "Recommender", "Representations", "make_config", "register"]
