"""LoRADropout: torch's dropout distribution, drawn on CPU by the C kernel (a hash of key
and index) or as geometric gaps."""
import adapterkit  # noqa: F401
import pytest
import torch
from tolerance import assert_within, unit_roundoff

from adapterkit.layers.dropout import LoRADropout, _DropoutKernel, bernoulli_positions


@pytest.fixture
def draws(native_kernels):
    """Run a test with the geometric draws, then with the C kernel: the kernel runs exactly
    when the kernels are on."""
    assert (_DropoutKernel.get(torch.ones(1)) is not None) == native_kernels


def test_positions_are_sorted_in_range_and_at_rate_p():
    torch.manual_seed(0)
    count, p = 2_000_000, 0.05
    positions = bernoulli_positions(count, p)
    assert positions.dtype == torch.int64
    assert bool((positions.diff() > 0).all())
    assert 0 <= int(positions[0]) and int(positions[-1]) < count
    sigma = (count * p * (1 - p)) ** 0.5
    assert abs(len(positions) - count * p) < 5 * sigma


def assert_scaled(got, want):
    """Both sides scale by 1 / (1 - p) in float32, each in at most two roundings (the scale
    and the product, tests/tolerance.py): 4u apart at most."""
    assert_within(got, want, 4 * unit_roundoff(torch.float32) * want.abs())


@pytest.mark.parametrize('shape', [(3000, 96), (2, 8, 17, 17)])  # rows; an NCHW map
def test_dropout_scales_kept_elements_and_its_gradient_is_the_mask(shape, draws):
    torch.manual_seed(0)
    p = 0.2
    dropout = LoRADropout(p).train()
    x = (torch.rand(shape) + 0.5).requires_grad_()  # no zeros of its own
    y = dropout(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - p) < 6 * (p * (1 - p) / kept.numel()) ** 0.5
    assert_scaled(y[kept], x[kept] / (1 - p))
    y.backward(torch.ones_like(y))
    assert_scaled(x.grad, kept.float() / (1 - p))


def test_dropout_is_the_identity_in_eval_and_keeps_the_mean_in_training(draws):
    x = torch.randn(500, 200)
    assert LoRADropout(0.5).eval()(x) is x
    torch.manual_seed(0)
    y = LoRADropout(0.5).train()(torch.ones(1000, 1000))
    assert abs(y.mean().item() - 1) < 0.01


def test_every_element_is_dropped_independently(draws):
    """Each element with probability p, independently of its neighbours (p^2 for a pair)
    and of earlier calls."""
    torch.manual_seed(1)
    p, dropout = 0.3, LoRADropout(0.3).train()
    hits = torch.stack([dropout(torch.ones(6)) == 0 for _ in range(40_000)]).float()
    assert ((hits.mean(0) - p).abs() < 0.015).all()  # about 6 sigma
    assert ((hits[:, :-1] * hits[:, 1:]).mean(0) - p * p).abs().max() < 0.01
    assert ((hits[:-1] * hits[1:]).mean(0) - p * p).abs().max() < 0.01  # successive calls
    big = dropout(torch.ones(3_000_000)) == 0  # the kernel's threads share one key
    assert abs(big.float().mean().item() - p) < 6 * (p * (1 - p) / 3e6) ** 0.5


def test_draws_follow_the_torch_seed_and_redo_drops_the_same_elements(draws):
    dropout = LoRADropout(0.1).train()
    x = torch.rand(50, 40) + 0.5
    torch.manual_seed(3)
    first, redo = dropout.draw(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)
    y = torch.rand(50, 40) + 0.5
    assert_scaled(redo(y), y * (first != 0) / 0.9)
