"""TMFUN against dense and brute-force references written from the paper's equations."""


import torch

from dglmm.nn.view_attention import attended_scores


def test_attended_scores_never_need_per_pair_items():
    torch.manual_seed(0)
    q, y, views = torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 6, 4)
    expected = torch.zeros(3, 6)
    for b in range(3):
        for j in range(6):
            a = torch.softmax(torch.stack([q[b] @ views[v, j] for v in range(5)]) / 2.0, 0)
            expected[b, j] = y[b] @ sum(a[v] * views[v, j] for v in range(5))
    torch.testing.assert_close(attended_scores(q, views, 2.0, y), expected)
