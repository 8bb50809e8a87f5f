"""dglmm/nn/init.py: initialisers within their stated bounds."""

import pytest
import torch

from dglmm.nn.init import init_linear, xavier_embedding


@pytest.mark.parametrize("bias", ["zero", "xavier"])
def test_init_linear_bounds(bias):
    """Weight within Xavier's bound sqrt(6 / (fan_in + fan_out)); bias zero, or within sqrt(6 / (1 + d_out))."""
    torch.manual_seed(0)
    lin = init_linear(torch.nn.Linear(40, 24), bias=bias)
    assert lin.weight.abs().max() <= (6 / (40 + 24)) ** 0.5
    # Xavier's std sqrt(2 / (fan_in + fan_out)) = 0.177; PyTorch's default init would give 0.091
    assert abs(lin.weight.std().item() / (2 / (40 + 24)) ** 0.5 - 1) < 0.1
    if bias == "zero":
        assert torch.count_nonzero(lin.bias) == 0
    else:
        bound = (6 / (1 + 24)) ** 0.5
        assert lin.bias.abs().max() <= bound
        assert lin.bias.abs().max() > 0.5 * bound  # the [1, d_out] bound, not the weight's smaller one


def test_init_linear_without_bias_and_bad_option():
    lin = init_linear(torch.nn.Linear(5, 3, bias=False), bias="xavier")
    assert lin.bias is None
    with pytest.raises(ValueError, match="bias must be one of"):
        init_linear(torch.nn.Linear(5, 3), bias="normal")


def test_xavier_embedding_bound():
    torch.manual_seed(0)
    emb = xavier_embedding(300, 16)
    assert emb.weight.shape == (300, 16)
    bound = (6 / (300 + 16)) ** 0.5
    assert emb.weight.abs().max() <= bound and emb.weight.abs().max() > 0.9 * bound
