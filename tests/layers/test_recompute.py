"""recompute_in_backward: backward redoes a tensor instead of keeping it."""
import contextlib
import weakref

import torch
import torch.nn.functional as F
from tolerance import assert_identities

from adapterkit.layers.recompute import recompute_in_backward


def test_recompute_in_backward_frees_the_tensor_and_redoes_it():
    torch.manual_seed(0)  # float64, to float64 rounding (tests/tolerance.py)
    norm = torch.nn.LayerNorm(8).double()
    weight = torch.randn(4, 8, requires_grad=True, dtype=torch.float64)
    x = torch.randn(5, 8, requires_grad=True, dtype=torch.float64)

    def loss(recompute):
        normed = norm(x)
        alive = weakref.ref(normed)
        with recompute_in_backward(normed, lambda: norm(x)) if recompute \
                else contextlib.nullcontext():
            out = F.linear(normed, weight)
        del normed
        return out.square().sum(), alive

    expected, kept = loss(False)
    assert kept() is not None  # the linear layer keeps its input for the weight's gradient
    actual, freed = loss(True)
    assert freed() is None  # ... unless it is to be redone
    inputs = [x, weight, norm.weight]
    assert_identities(torch.autograd.grad(actual, inputs), torch.autograd.grad(expected, inputs),
                      'gradient')


def test_recompute_in_backward_takes_a_channels_last_map():
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 1, 1, requires_grad=True, dtype=torch.float64)
    x = torch.randn(2, 3, 5, 5, requires_grad=True, dtype=torch.float64)
    mapped = (x * 2).contiguous(memory_format=torch.channels_last)
    alive = weakref.ref(mapped)
    with recompute_in_backward(mapped, lambda: (x * 2).contiguous(
            memory_format=torch.channels_last)):
        out = F.conv2d(mapped, weight)
    del mapped
    assert alive() is None
    got = torch.autograd.grad(out.square().sum(), [x, weight])
    want = torch.autograd.grad(F.conv2d(x * 2, weight).square().sum(), [x, weight])
    assert_identities(got, want, 'gradient')
