"""LoRADropout: torch's dropout distribution, drawn as geometric gaps on CPU."""
import adapterkit  # noqa: F401
import pytest
import torch

from adapterkit.adapters.dropout import LoRADropout, bernoulli_positions


def test_positions_are_sorted_in_range_and_at_rate_p():
    torch.manual_seed(0)
    count, p = 2_000_000, 0.05
    positions = bernoulli_positions(count, p)
    assert positions.dtype == torch.int64
    assert bool((positions.diff() > 0).all())
    assert 0 <= int(positions[0]) and int(positions[-1]) < count
    sigma = (count * p * (1 - p)) ** 0.5
    assert abs(len(positions) - count * p) < 5 * sigma


def test_every_trial_succeeds_with_p_independently_of_its_neighbour():
    torch.manual_seed(1)
    draws, count, p = 40_000, 6, 0.3
    hits = torch.zeros(draws, count)
    for row in hits:
        row[bernoulli_positions(count, p)] = 1
    rate = hits.mean(0)
    assert ((rate - p).abs() < 0.015).all(), rate  # about 6 sigma
    both = (hits[:, :-1] * hits[:, 1:]).mean(0)  # neighbours: p^2 if independent
    assert ((both - p * p).abs() < 0.01).all(), both


def test_positions_follow_the_torch_seed():
    torch.manual_seed(3)
    first = bernoulli_positions(10_000, 0.1)
    torch.manual_seed(3)
    assert torch.equal(first, bernoulli_positions(10_000, 0.1))


@pytest.mark.parametrize('shape', [(3000, 96), (2, 8, 17, 17)])  # rows; an NCHW map
def test_dropout_scales_kept_elements_and_its_gradient_is_the_mask(shape):
    torch.manual_seed(0)
    p = 0.2
    dropout = LoRADropout(p).train()
    x = (torch.rand(shape) + 0.5).requires_grad_()  # no zeros of its own
    y = dropout(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - p) < 0.02
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))


def test_dropout_is_the_identity_in_eval_and_keeps_the_mean_in_training():
    x = torch.randn(500, 200)
    assert LoRADropout(0.5).eval()(x) is x
    torch.manual_seed(0)
    y = LoRADropout(0.5).train()(torch.ones(1000, 1000))
    assert abs(y.mean().item() - 1) < 0.01
