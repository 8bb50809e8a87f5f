"""The model contract, the backbone protocol and the registry.

Every model is a :class:`Recommender`: it consumes the dataset heterograph, returns user and item
representations, names its loss terms over a :class:`Batch`, scores users against all items and may derive
graph structure in the hooks (kept as module state).  Adding a model is adding one file in ``dglmm/models/``
that decorates its class with :func:`register`; the package imports every module it finds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import dgl
import torch
from torch import nn

from dglmm.data.dataset import Dataset
from dglmm.data.sampler import ExtraSampler
from dglmm.errors import InputError
from dglmm.nn.graph_state import GraphState
from dglmm.nn.init import xavier_embedding
from dglmm.nn.item_graph import ItemGraph
from dglmm.nn.losses import bpr_loss, l2_penalty
from dglmm.options import MAX_DIM, LogUniform, build, describe, option


class Representations(NamedTuple):
    """Final user and item representations used for scoring (``extras`` carries model-specific tensors)."""

    user: torch.Tensor
    item: torch.Tensor
    extras: dict[str, Any] | None = None


#: a batch's user, positive-item and negative-item rows of the training output
Rows = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclasses.dataclass
class Batch:
    """One training batch: BPR triples ``(users, pos, neg)`` and the samples of a model's extra samplers.

    ``extras`` maps a sampler name (see :meth:`Recommender.extra_samplers`) to its sample for this batch,
    e.g. KG triples ``(head, relation, tail, corrupted tail)`` for KGAT's TransR loss.
    """

    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to(self, device: torch.device | str) -> Batch:
        move = lambda x: x.to(device) if isinstance(x, torch.Tensor) else x  # noqa: E731
        extras = {k: tuple(move(t) for t in v) if isinstance(v, tuple) else move(v) for k, v in self.extras.items()}
        return Batch(self.users.to(device), self.pos.to(device), self.neg.to(device), extras)


@dataclasses.dataclass
class ModelConfig:
    """Options shared by every model; subclasses add their own fields with :func:`dglmm.options.option`."""

    embedding_dim: int = option(64, "embedding size d", low=1, high=MAX_DIM)
    reg_weight: float = option(1e-4, "L2 weight on the batch's ego embeddings (BPR papers' definition); searched "
                               "over LightGCN sec. 4.1's range 1e-6..1e-2", low=0.0, space=LogUniform(1e-6, 1e-2))


def _upgrade_legacy_keys(model: Recommender, state: dict, prefix: str, *args: Any) -> None:
    """Load pre-hook: :meth:`Recommender.upgrade_state_dict` in place, before strict loading checks the keys."""
    if prefix or not model.legacy_prefixes():  # nested (a backbone): the outer model renamed its keys
        return
    upgraded = model.upgrade_state_dict(state)
    if list(upgraded) != list(state):
        state.clear()
        state.update(upgraded)


class Recommender(nn.Module):
    """Base class of every model.

    The trainer calls, per batch, ``output = training_forward(graph, batch)`` (by default ``self(graph)``, the
    representations of all users and items) and ``loss(output, batch)``, a dict of named terms that it sums
    and logs; evaluation calls ``forward(graph)`` once and :meth:`score` per chunk of users.  Graph-rebuilding
    models keep every graph they derive as module state (``extra_state`` or buffers), so that checkpoints,
    ``best.pt`` and ``dglmm evaluate`` see the graphs of their epoch; the hooks only update that state.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    needs_modalities: ClassVar[bool] = False
    needs_kg: ClassVar[bool] = False
    #: every parameter gets a gradient from every training batch (DDP then skips its search for unused ones)
    uses_every_parameter: ClassVar[bool] = False
    #: what the exported user/item vectors mean when the score is not their inner product (dglmm export)
    export_note: ClassVar[str] = ""

    #: can serve as another model's CF backbone (:func:`build_backbone`): the class implements the backbone
    #: protocol, :meth:`user_embedding_table`, :meth:`item_embedding_table` and :meth:`ego_embeddings`
    can_be_backbone: ClassVar[bool] = False

    def __init__(self, dataset: Dataset, graph: dgl.DGLGraph, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.n_users = dataset.n_users
        self.n_items = dataset.n_items
        self.has_id_tables = False
        self._register_load_state_dict_pre_hook(_upgrade_legacy_keys, with_module=True)

    # -- checkpoints written before a parameter was renamed -----------------------------------------------
    def legacy_prefixes(self) -> dict[str, str]:
        """Former key prefix -> current one, from every submodule declaring ``legacy_names`` (its attributes'
        former names on its parent, e.g. :data:`dglmm.nn.modality.LEGACY_NAMES`)."""
        out = {}
        for name, module in self.named_modules():
            parent = name.rpartition(".")[0]
            for old, new in getattr(module, "legacy_names", {}).items():
                out[f"{parent}.{old}." if parent else f"{old}."] = f"{name}.{new}."
        return out

    def upgrade_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` with every key this model no longer has but once had (:meth:`legacy_prefixes`) renamed,
        in its order, and the extra state of modules that gained one since; other keys are kept, so that loading
        stays strict about them."""
        current = {k for k, _ in self.named_parameters()} | {k for k, _ in self.named_buffers()}
        prefixes = self.legacy_prefixes()

        def rename(key: str) -> str:
            for old, new in prefixes.items():
                if key.startswith(old) and key not in current and new + key[len(old):] in current:
                    return new + key[len(old):]
            return key
        upgraded = {rename(k): v for k, v in state.items()}
        # a module that keeps extra state only since the checkpoint was written gets it as it is now (derived
        # state, e.g. a frozen item graph built from the features)
        for name, module in self.named_modules():
            key = f"{name}._extra_state" if name else "_extra_state"
            if type(module).get_extra_state is not nn.Module.get_extra_state and key not in upgraded:
                upgraded[key] = module.get_extra_state()
        return upgraded

    def add_id_tables(self, dim: int) -> None:
        """The layer-0 ID embeddings ``user_emb`` and ``item_emb`` (Xavier-uniform, as all the papers): what
        :meth:`ego_embeddings` regularises and the backbone protocol's tables return."""
        self.user_emb = xavier_embedding(self.n_users, dim)
        self.item_emb = xavier_embedding(self.n_items, dim)
        self.has_id_tables = True

    def add_backbone(self, name: str, dataset: Dataset, graph: dgl.DGLGraph, **settings: Any) -> None:
        """The CF model ``backbone`` this one plugs into (:func:`build_backbone` with the common ``settings``):
        it gives the CF representations and the ID tables, and its ego embeddings are the L2 term's."""
        self.backbone = build_backbone(name, dataset, graph, **settings)

    # -- the contract --------------------------------------------------------------------------------
    def forward(self, graph: dgl.DGLGraph) -> Representations:  # pragma: no cover - abstract
        raise NotImplementedError

    def training_forward(self, graph: dgl.DGLGraph, batch: Batch) -> Any:
        """What :meth:`loss` receives for ``batch`` (default: the full :meth:`forward`)."""
        return self(graph)

    def loss(self, output: Any, batch: Batch) -> dict[str, torch.Tensor]:
        """The named loss terms of a batch: ``bpr`` on :meth:`pair_scores`, ``l2`` (``reg_weight`` x
        :meth:`l2_term`) and the model's own terms (:meth:`model_terms`).  A phase batch (no BPR triples, e.g.
        KGAT's TransR batches) has only the model's own terms.  Models extend the hooks, not this method."""
        terms: dict[str, torch.Tensor] = {}
        if len(batch.users):
            rows = self.batch_rows(output, batch)
            pos, neg = self.pair_scores(output, batch, rows)
            terms["bpr"] = bpr_loss(pos, neg)
            if self.config.reg_weight > 0:
                l2 = self.l2_term(output, batch, rows)
                if l2 is not None:
                    terms["l2"] = self.config.reg_weight * l2
        terms.update(self.model_terms(output, batch))
        return terms

    def pair_scores(self, output: Any, batch: Batch, rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``y_ui`` and ``y_uj`` of the batch's triples (default: inner products of the batch ``rows``,
        :meth:`batch_rows`)."""
        u, i, j = rows
        return (u * i).sum(-1), (u * j).sum(-1)

    def l2_term(self, output: Any, batch: Batch, rows: Rows) -> torch.Tensor | None:
        """The L2 penalty before ``reg_weight`` (default: on :meth:`ego_embeddings`; None: no L2 term); ``rows``
        are the batch's final user, positive and negative rows, for models that regularise those."""
        ego = self.ego_embeddings(batch)
        return l2_penalty(*ego) if ego else None

    def model_terms(self, output: Any, batch: Batch) -> dict[str, torch.Tensor]:
        """The model's own weighted loss terms beside BPR and L2, by name (default: none)."""
        return {}

    def batch_rows(self, output: Any, batch: Batch) -> Rows:
        """The user, positive and negative rows of ``batch`` in the training output."""
        return output.user[batch.users], output.item[batch.pos], output.item[batch.neg]

    def ego_embeddings(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """The layer-0 embeddings of a batch that the L2 term regularises: the ID tables' rows when the model
        has them (:meth:`add_id_tables`), its CF backbone's when it plugs into one (:meth:`add_backbone`), else
        none (no L2 term)."""
        if self.has_id_tables:
            return self.user_emb(batch.users), self.item_emb(batch.pos), self.item_emb(batch.neg)
        if "backbone" in self._modules:
            return self.backbone.ego_embeddings(batch)
        return ()

    def user_embedding_table(self) -> torch.Tensor:
        """Backbone protocol: the user ID embeddings (layer 0)."""
        return self.user_emb.weight

    def item_embedding_table(self) -> torch.Tensor:
        """Backbone protocol: the item ID embeddings (layer 0), e.g. the input of MICRO's item graphs."""
        return self.item_emb.weight

    def score(self, reps: Representations, users: torch.Tensor) -> torch.Tensor:
        """Scores ``[len(users), n_items]`` from precomputed representations."""
        return reps.user[users] @ reps.item.T

    def score_is_inner_product(self) -> bool:
        """True when :meth:`score` is ``reps.user @ reps.item.T``, so the exported vectors
        (:meth:`dglmm.Run.export`) reproduce it; a model that scores otherwise says what its export means in
        :attr:`export_note`."""
        return type(self).score is Recommender.score

    def extra_samplers(self, dataset: Dataset, batch_size: int, seed: int) -> dict[str, ExtraSampler]:
        """Samplers beside the BPR one, by name (:class:`dglmm.data.sampler.ExtraSampler`: its declared ``phase``
        and ``own_optimizer`` say whether it feeds every BPR batch or runs a phase of its own after them, as
        KGAT alternates its CF and KG losses); their states are checkpointed with the BPR sampler's."""
        return {}

    def load_pretrained(self, seed: int | None = None) -> None:
        """Initialise parameters from a pretrained model named in the config (KGAT's ``pretrain``); default:
        nothing.  ``seed``: this run's ``train.seed`` (a pretrained run with several seeds gives the one trained
        with the same seed).  Called by :func:`dglmm.train.run.run_once` once before training from scratch,
        never on ``--resume`` (the checkpoint's parameters are kept) nor by ``dglmm evaluate`` (``best.pt`` is
        loaded), so neither needs the pretrained files."""

    def bind_graphs(self, device: torch.device | str) -> None:
        """The one place where the graphs the model keeps outside its parameters and buffers follow its device:
        :meth:`~dglmm.nn.graph_state.GraphState.bind` of every submodule that holds one (learned item graphs,
        added relations); a model with other holders extends it.  The trainer calls it once after moving the
        model and after every epoch hook."""
        for module in self.modules():
            if isinstance(module, GraphState):
                module.bind(torch.device(device))

    # -- hooks: they update module state (derived graphs) and return nothing ---------------------------------
    def on_epoch_start(self, epoch: int, graph: dgl.DGLGraph) -> None:
        """Called before an epoch's first batch; tells the model's item graphs (their rebuild schedule)."""
        for module in self.modules():
            if isinstance(module, ItemGraph):
                module.on_epoch_start(epoch)

    def on_batch_start(self, batch_index: int) -> None:
        """Called before every training batch; tells the model's item graphs (LATTICE rebuilds its learned
        graph on batch 0)."""
        for module in self.modules():
            if isinstance(module, ItemGraph):
                module.on_batch_start(batch_index)

    def on_epoch_end(self, epoch: int, graph: dgl.DGLGraph) -> None:
        """Called after an epoch's last batch, before validation (SLIF-MR adds its ``correlate`` edges here)."""

    # -- backbone protocol ----------------------------------------------------------------------------------
    @classmethod
    def backbone_options(cls, **settings: Any) -> dict[str, Any]:
        """This model's options when it serves as another model's CF backbone: the common ``settings``
        (``embedding_dim``, ``reg_weight``, ``n_layers``, hints such as ``adjacency``) that its config has."""
        known = {f.name for f in dataclasses.fields(cls.Config)}
        return {k: v for k, v in settings.items() if k in known}


#: the registered models whose ``can_be_backbone`` is set (a test keeps the two equal); a tuple here because the
#: configs that offer it as choices are defined while the models are still being imported
BACKBONES = ("mf", "lightgcn", "ngcf")


def build_backbone(name: str, dataset: Dataset, graph: dgl.DGLGraph, **settings: Any) -> Recommender:
    """A CF model (one of :data:`BACKBONES`) configured from common settings through its ``backbone_options``.

    A backbone exposes ``forward(graph)`` and the backbone protocol of :class:`Recommender`
    (``user_embedding_table()``, ``item_embedding_table()``, ``ego_embeddings(batch)``).
    """
    cls = REGISTRY.get(name)
    if cls is None or not cls.can_be_backbone:
        raise InputError(f"backbone must be one of {', '.join(BACKBONES)}, got {name!r}")
    return cls(dataset, graph, make_config(cls, cls.backbone_options(**settings)))


REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a model reachable by ``cls.name`` (``dglmm train -m NAME``)."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def config_fields(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) for every option of a model (``cls`` a model class) or of a config section
    (``cls`` its dataclass, e.g. ``TrainConfig``), for ``dglmm models`` and ``dglmm options``; the help ends with
    the option's search space and activity condition when it declares them (``[search: ...; when ...]``)."""
    out = []
    for f in dataclasses.fields(getattr(cls, "Config", cls)):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        extra = describe(f.metadata)
        out.append((f.name, default, f"{f.metadata.get('help', '')} {extra}".strip()))
    return out


def make_config(cls: type[Recommender], options: dict[str, Any]) -> ModelConfig:
    """Build a model config from a dict: values coerced and checked against the declared options
    (:func:`dglmm.options.build`), unknown keys rejected with one line."""
    return build(cls.Config, options, "model")
