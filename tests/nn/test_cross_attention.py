"""dglmm/nn/cross_attention.py: chunked node attention and the channel attention against dense products written from
CAmgr's eqs. 18-22, values and gradients, with no N x N tensor."""

import math

import pytest
import torch

from dglmm.nn.cross_attention import CrossAttention, channel_attention, chunked_attention
from tests.helpers import LargestTensor


def test_chunked_attention_equals_dense_values_and_gradients():
    torch.manual_seed(0)
    q, k, v = (torch.randn(n, 6, requires_grad=True) for n in (23, 17, 17))
    dense = torch.softmax(q @ k.T / math.sqrt(6), 1) @ v                                 # eqs. 18, 21
    chunked = chunked_attention(q, k, v, chunk_size=4)
    torch.testing.assert_close(chunked, dense)
    grads = torch.autograd.grad(dense.pow(2).sum(), (q, k, v))
    grads_chunked = torch.autograd.grad(chunked_attention(q, k, v, chunk_size=4).pow(2).sum(), (q, k, v))
    for a, b in zip(grads, grads_chunked, strict=True):
        torch.testing.assert_close(a, b)


def test_cross_attention_common_and_distinct_parts():
    torch.manual_seed(0)
    block = CrossAttention(5, chunk_size=3)
    x_q, x_kv = torch.randn(11, 5), torch.randn(11, 5)
    q, k, v = block.query(x_q), block.key(x_kv), block.value(x_kv)
    common = torch.softmax(q @ k.T / math.sqrt(5), 1) @ v
    out_common, out_distinct, out_q = block(x_q, x_kv)
    torch.testing.assert_close(out_common, common)
    torch.testing.assert_close(out_distinct, v - common)                                 # eq. 22: V - DA V
    torch.testing.assert_close(out_q, q)
    rows, keys = torch.tensor([3, 7]), torch.tensor([0, 2, 4, 6])                       # subsets of tokens
    c, d, _ = block(x_q, x_kv, rows, keys)
    sub = torch.softmax(q[rows] @ k[keys].T / math.sqrt(5), 1) @ v[keys]
    torch.testing.assert_close(c, sub)
    torch.testing.assert_close(d, v[rows] - sub)


def test_channel_attention_is_the_papers_d_by_n_layout_read_literally():
    """``Q, K, V in R^{d x N}`` (section 3.1's layout): ``softmax(Q K^T / sqrt(d_k))`` is ``d x d``, times ``V``."""
    torch.manual_seed(0)
    n, d = 13, 5
    q, k, v = torch.randn(n, d), torch.randn(n, d), torch.randn(n, d)   # node-major: row n is node n
    Q, K, V = q.T, k.T, v.T                                              # the paper's d x N matrices
    attention = torch.softmax(Q @ K.T / math.sqrt(d), dim=1)             # eq. 18: d x d, rows sum to 1
    assert attention.shape == (d, d)
    expected = (attention @ V).T                                         # back to node-major [N, d]
    torch.testing.assert_close(channel_attention(q, k, v), expected)
    rows = torch.tensor([2, 9])
    torch.testing.assert_close(channel_attention(q, k, v, rows), expected[rows])
    node = 4
    loop = torch.stack([sum(attention[c, j] * v[node, j] for j in range(d)) for c in range(d)])  # one node
    torch.testing.assert_close(channel_attention(q, k, v)[node], loop)


def test_cross_attention_over_channels_uses_every_node_for_a_subset_of_queries():
    torch.manual_seed(0)
    block = CrossAttention(5, axis="channels")
    x_q, x_kv = torch.randn(11, 5), torch.randn(11, 5)
    q, k, v = block.query(x_q), block.key(x_kv), block.value(x_kv)
    common = (torch.softmax(q.T @ k / math.sqrt(5), 1) @ v.T).T
    rows = torch.tensor([3, 7])
    c, dist, out_q = block(x_q, x_kv, rows)
    torch.testing.assert_close(c, common[rows])
    torch.testing.assert_close(dist, v[rows] - common[rows])                            # eq. 22: V - DA V
    torch.testing.assert_close(out_q, q[rows])
    with pytest.raises(ValueError, match="axis"):
        CrossAttention(5, axis="tokens")


def test_chunked_attention_never_allocates_n_by_n():
    q, k, v = (torch.randn(600, 8, requires_grad=True) for _ in range(3))
    with LargestTensor() as probe:
        chunked_attention(q, k, v, chunk_size=64).sum().backward()
    assert probe.largest <= 64 * 600
