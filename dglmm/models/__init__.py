"""Models: importing this package imports every module in it, which registers each model in :data:`REGISTRY`."""

import importlib
import pkgutil

from dglmm.models.base import (
    BACKBONES,
    REGISTRY,
    Batch,
    Recommender,
    Representations,
    build_backbone,
    make_config,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BACKBONES", "REGISTRY", "Batch", "Recommender", "Representations", "build_backbone", "make_config",
           "register"]
