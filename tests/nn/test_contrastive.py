"""dglmm/nn/contrastive.py: one contrastive option group for every model with an InfoNCE term, and the critic of
the shared InfoNCE (cosine or dot) in each of its forms, against hand-written loops."""

import dataclasses

import pytest
import torch

from dglmm.models import REGISTRY, make_config
from dglmm.nn.contrastive import GROUP, ContrastiveOptions, Reading, contrastive_options
from dglmm.nn.losses import info_nce, info_nce_chunked, info_nce_rows, info_nce_to_target, multiview_info_nce
from dglmm.options import OptionError


def test_every_contrastive_model_declares_the_one_group():
    contrastive = {name for name, cls in REGISTRY.items() if issubclass(cls.Config, ContrastiveOptions)}
    assert {"micro", "lattice", "tmfun", "slifmr"} <= contrastive
    for name in contrastive:
        fields = {f.name: f for f in dataclasses.fields(REGISTRY[name].Config)}
        for key, (_, _, _, declared) in GROUP.items():
            meta = fields[f"cl_{key}"].metadata
            assert {k: meta[k] for k in declared} == {k: tuple(v) if k == "choices" else v
                                                        for k, v in declared.items()}, (name, key)
    micro = make_config(REGISTRY["micro"], {})
    assert (micro.cl_weight, micro.cl_temperature, micro.cl_critic, micro.cl_max_items) == (0.03, 0.5, "cosine", 1024)
    with pytest.raises(OptionError, match="model.cl_critic"):
        make_config(REGISTRY["tmfun"], {"cl_critic": "euclid"})


def test_slifmr_former_inter_names_still_work_with_a_warning():
    with pytest.warns(FutureWarning, match="model.inter_weight is deprecated, use model.cl_weight"):
        config = make_config(REGISTRY["slifmr"], {"inter_weight": 0.3})
    assert config.cl_weight == 0.3


def test_group_rows_and_readings():
    group = contrastive_options(weight=Reading(0.1, "beta of eq. 1"), items="batch", max_items=2)
    config = dataclasses.make_dataclass("C", [], bases=(group,))()
    fields = {f.name: f for f in dataclasses.fields(config)}
    assert fields["cl_weight"].metadata["help"].endswith("beta of eq. 1") and config.cl_items == "batch"
    rows = config.rows(10, torch.tensor([1, 2, 3]), torch.tensor([3, 4]))
    assert len(rows) == 2 and set(rows.tolist()) <= {1, 2, 3, 4}
    with pytest.raises(TypeError, match="weight"):
        contrastive_options()


def dot_info_nce_loop(a, p, tau, same_view):
    total = 0.0
    for i in range(len(a)):
        logits = [a[i] @ p[j] / tau for j in range(len(p))]
        if same_view:
            logits += [a[i] @ a[j] / tau for j in range(len(a)) if j != i]
        total = total - (logits[i] - torch.logsumexp(torch.stack(logits), 0))
    return total / len(a)


@pytest.mark.parametrize("same_view", [True, False])
def test_dot_critic_in_every_info_nce_form(same_view):
    torch.manual_seed(0)
    a, p = torch.randn(9, 4), torch.randn(9, 4)
    expected = dot_info_nce_loop(a, p, 0.7, same_view)
    torch.testing.assert_close(info_nce(a, p, 0.7, same_view, critic="dot"), expected)
    torch.testing.assert_close(info_nce_chunked(a, p, 0.7, same_view, chunk_size=4, critic="dot"), expected)
    torch.testing.assert_close(info_nce_rows(a, p, 0.7, same_view, "dot", chunk_size=2), expected)
    if same_view:
        torch.testing.assert_close(multiview_info_nce([a, a], p, 0.7, chunk_size=4, critic="dot"), expected)


@pytest.mark.parametrize("exclude", [True, False])
def test_dot_critic_toward_a_fixed_target_equals_the_loop_with_gradients(exclude):
    torch.manual_seed(1)
    a, t, tau = torch.randn(7, 3, requires_grad=True), 3 * torch.randn(7, 3), 0.5
    loop = 0.0
    for i in range(7):
        pos = a[i] @ t[i] / tau
        negatives = [a[i] @ t[j] / tau for j in range(7) if j != i] + ([] if exclude else [pos])
        loop = loop - (pos - torch.logsumexp(torch.stack(negatives), 0))
    loop = loop / 7
    (expected,) = torch.autograd.grad(loop, a)
    got = info_nce_to_target(a, t, tau, exclude_positive=exclude, chunk_size=3, critic="dot")
    (grad,) = torch.autograd.grad(got, a)
    torch.testing.assert_close(got, loop)
    torch.testing.assert_close(grad, expected)
