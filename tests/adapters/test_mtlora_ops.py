"""The task-stream products of MTLoRA (adapters/mtlora_ops.py) against autograd on the plain
formulas: gradcheck in float64, and float32 shapes that span several row blocks."""
import adapterkit  # noqa: F401
import pytest
import torch
import torch.nn.functional as F

from adapterkit.adapters.mtlora_ops import (_row_blocks, task_down, task_hidden_down,
                                            task_up)

T, M, RANK, IN, OUT = 3, 7, 2, 5, 4


def double(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize('per_task_inputs', [True, False])
def test_task_down_gradients(per_task_inputs):
    inputs = double(T, M, IN) if per_task_inputs else double(M, IN)
    assert torch.autograd.gradcheck(task_down, (inputs, double(T, RANK, IN)))


def test_task_up_gradients():
    assert torch.autograd.gradcheck(task_up, (double(M, OUT), double(T, M, RANK),
                                              double(T, OUT, RANK)))


@pytest.mark.parametrize('approximate', ['none', 'tanh'])
def test_task_hidden_down_gradients(approximate):
    def fn(base, low, up, down):
        return task_hidden_down(base, low, up, down, approximate)
    assert torch.autograd.gradcheck(fn, (double(M, OUT), double(T, M, RANK),
                                         double(T, OUT, RANK), double(T, 3, OUT)))


def plain(base, inputs, down1, up1, down2):
    """The formulas with batched products and autograd, no blocks."""
    low1 = torch.bmm(inputs, down1.transpose(1, 2))
    hidden = F.gelu(base + torch.bmm(low1, up1.transpose(1, 2)))
    low2 = torch.bmm(hidden, down2.transpose(1, 2))
    return low1, low2


def test_ops_match_autograd_over_several_row_blocks():
    torch.manual_seed(0)
    rows, width = 3000, 384
    base = torch.randn(rows, width, requires_grad=True)
    assert len(_row_blocks(base)) >= 3
    inputs = torch.randn(T, rows, 96, requires_grad=True)
    down1 = torch.randn(T, 4, 96, requires_grad=True)
    up1 = torch.randn(T, width, 4, requires_grad=True)
    down2 = torch.randn(T, 4, width, requires_grad=True)
    leaves = [base, inputs, down1, up1, down2]
    weight = torch.randn(T, rows, 4)

    low1 = task_down(inputs, down1)
    got_out = task_hidden_down(base, low1, up1, down2)
    got = torch.autograd.grad((got_out * weight).sum(), leaves)
    want_low1, want_out = plain(*leaves)
    want = torch.autograd.grad((want_out * weight).sum(), leaves)
    torch.testing.assert_close(low1, want_low1)
    torch.testing.assert_close(got_out, want_out, rtol=1e-4, atol=1e-4)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-3)


def test_ops_follow_autocast_dtype_on_cpu():
    inputs, down = torch.randn(T, M, IN), torch.randn(T, RANK, IN)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low = task_down(inputs, down)
        out = task_up(torch.randn(M, OUT).bfloat16(), low, torch.randn(T, OUT, RANK))
    assert low.dtype == out.dtype == torch.bfloat16
