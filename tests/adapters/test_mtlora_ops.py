"""The task-stream products of MTLoRA (layers/task_lowrank.py, adapters/mtlora/ops.py)
against autograd on the plain formulas: gradcheck in float64, and float32 shapes that span
several row blocks, through both the PyTorch ops and the fused C kernel of the task MLPs."""
import adapterkit  # noqa: F401
import pytest
import torch
import torch.nn.functional as F

from adapterkit.adapters.mtlora.ops import _row_blocks, _TaskMLPKernel, task_hidden_down
from adapterkit.layers.task_lowrank import task_down, task_up

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


def uses_kernel(base, low):
    return _TaskMLPKernel.get(base, low, 'none') is not None


def test_ops_match_autograd_over_several_row_blocks(native_kernels):
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
    assert uses_kernel(base, low1) == native_kernels
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


@pytest.mark.parametrize('tasks,rows,width,ranks,threads', [
    (1, 5, 7, [1], 2),             # a few rows, an odd width
    (3, 37, 21, [2, 1, 2], 2),     # ranks below the kernel's are zero-padded
    (2, 301, 384, [4, 4], 1),
    (4, 1000, 96, [4, 3, 4, 2], 2),
])
def test_task_mlp_kernel_matches_the_pytorch_ops(monkeypatch, c_compiler, tasks, rows, width,
                                                 ranks, threads):
    torch.manual_seed(0)
    rank = max(ranks)
    mask = torch.zeros(tasks, rank)  # per-task ranks, stacked with zero padding
    for task, r in enumerate(ranks):
        mask[task, :r] = 1
    base = torch.randn(rows, width)
    low = torch.randn(tasks, rows, rank) * mask[:, None]
    up = torch.randn(tasks, width, rank) * mask[:, None] * 0.5
    down = torch.randn(tasks, rank, width) * mask[..., None] * 0.5
    grad = torch.randn(tasks, rows, rank)

    def run(native):
        monkeypatch.setenv('ADAPTERKIT_NATIVE', native)
        leaves = [t.clone().requires_grad_() for t in (base, low, up, down)]
        out = task_hidden_down(*leaves)
        return [out.detach(), *torch.autograd.grad(out, leaves, grad)]

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert uses_kernel(base, low)
        got = run('1')
        want = run('0')
    finally:
        torch.set_num_threads(previous)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * float(w.abs().max()))


def test_task_mlp_kernel_only_where_it_applies(c_compiler):
    base, low = torch.randn(8, 16), torch.randn(2, 8, 4)
    assert uses_kernel(base, low)
    assert not uses_kernel(base.double(), low.double())  # float64 keeps its precision
    assert not uses_kernel(base, torch.randn(2, 8, 8))  # ranks above the kernel's
    assert _TaskMLPKernel.get(base, low, 'tanh') is None


def test_task_mlp_kernel_computes_bfloat16_in_float32(c_compiler):
    """Under autocast the operands come in bfloat16: the kernel widens them, and answers in
    bfloat16 what float32 gives on the same values."""
    torch.manual_seed(0)
    shapes = [(300, 96), (2, 300, 4), (2, 96, 4), (2, 4, 96)]
    narrow = [torch.randn(*shape).bfloat16().requires_grad_() for shape in shapes]
    wide = [t.detach().float().requires_grad_() for t in narrow]
    assert uses_kernel(narrow[0], narrow[1])
    grad = torch.randn(2, 300, 4)
    got = task_hidden_down(*narrow)
    got.backward(grad.bfloat16())
    want = task_hidden_down(*wide)
    want.backward(grad)
    assert got.dtype == torch.bfloat16 and all(t.grad.dtype == torch.bfloat16 for t in narrow)
    for g, w in zip([got] + [t.grad for t in narrow], [want] + [t.grad for t in wide]):
        w = w.detach()
        torch.testing.assert_close(g.float(), w, rtol=1e-2, atol=1e-2 * float(w.abs().max()))
