"""The task-stream products of MTLoRA (layers/task_lowrank.py, adapters/mtlora/ops.py)
against autograd on the plain formulas: gradcheck in float64, and float32 shapes that span
several row blocks, through both the PyTorch ops and the fused C kernel of the task MLPs,
each within the rounding bound of its float32 computation (tests/tolerance.py)."""
import math

import adapterkit  # noqa: F401
import pytest
import torch
import torch.nn.functional as F
from tolerance import Bounded, unit_roundoff

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


# ---------------------------------------------- float32 rounding of GELU and its slope
# Both the C kernel and PyTorch's vectorized CPU GELU compute x Phi(x) with erf by
# Abramowitz & Stegun 7.1.26: erf(y) ~ 1 - q(t) exp(-y^2), q a degree-5 polynomial in
# t = 1 / (1 + p y), off by at most 1.5e-7 (a more accurate erf only does better). Evaluated
# in float32: t carries 3u; Horner's rule on q adds gamma(10) sum |a_i| t^i <= 45u and t's
# error reaches q through |q'(t)| t <= 16.2, 49u; exp(-y^2) is off by (y^2 + 4)u relative
# (its argument's rounding, times the argument, and exp's own), the argument's scaling by
# 1 / sqrt 2 costs 1u, the products and the subtraction 2u. With gauss = exp(-x^2 / 2) <= 1
# and x^2 gauss <= 2 / e:  |erf error| <= 1.5e-7 + 3u + 100u gauss.
U = unit_roundoff(torch.float32)
GELU_SLOPE = 1.13  # max |GELU'| = Phi(sqrt 2) + sqrt 2 phi(sqrt 2) = 1.129
GELU_CURVATURE = 0.8  # max |GELU''| = max |phi(x) (2 - x^2)| = 2 phi(0) = 0.798


def _phi_error(x):
    """Bound on the float32 error of Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * (1.5e-7 + 3 * U + 100 * U * torch.exp(-x * x / 2)) + U


def bounded_gelu(x: Bounded) -> Bounded:
    return x.map(F.gelu, GELU_SLOPE,
                 lambda x: x.abs() * _phi_error(x) + 2 * U * F.gelu(x).abs())


def bounded_gelu_slope(x: Bounded) -> Bounded:
    """GELU'(x) = Phi(x) + x phi(x): Phi's error, phi's (exp's (x^2 + 4)u and 3 products)."""
    def slope(x):
        return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-x * x / 2) / math.sqrt(
            2 * math.pi)

    def own_error(x):
        density = torch.exp(-x * x / 2) / math.sqrt(2 * math.pi)
        return _phi_error(x) + x.abs() * density * (x * x + 7) * U + 2 * U * slope(x).abs()
    return x.map(slope, GELU_CURVATURE, own_error)


def bounded_task_mlp(base, low, up, down, grad_out):
    """``task_hidden_down`` and its backward for the upstream gradient ``grad_out``, as
    Bounded: [out, grad_base, grad_low, grad_up, grad_down]."""
    base, low, up, down, grad_out = (Bounded(t) if isinstance(t, torch.Tensor) else t
                                     for t in (base, low, up, down, grad_out))
    pre = base.add_product(low, up.mT)  # (T, M, H)
    hidden = bounded_gelu(pre)
    grad_pre = (grad_out @ down) * bounded_gelu_slope(pre)
    return [hidden @ down.mT, grad_pre.sum(0), grad_pre @ up, grad_pre.mT @ low,
            grad_out.mT @ hidden]


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

    # the same in float64, with what float32 rounding may add to each element
    exact_inputs, exact_down1 = Bounded(inputs), Bounded(down1)
    exact_low1 = exact_inputs @ exact_down1.mT
    out, grad_base, grad_low1, grad_up1, grad_down2 = bounded_task_mlp(
        base, exact_low1, up1, down2, weight)
    bounds = [grad_base, grad_low1 @ exact_down1, grad_low1.mT @ exact_inputs, grad_up1,
              grad_down2]
    for what, result in (('ops', [low1, got_out, *got]), ('plain', [want_low1, want_out, *want])):
        names = ['low1', 'out'] + [f'grad {n}' for n in ('base', 'inputs', 'down1', 'up1',
                                                         'down2')]
        for name, value, bound in zip(names, result, [exact_low1, out, *bounds]):
            bound.check(value, f'{what} {name}')


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
    bounds = bounded_task_mlp(base, low, up, down, grad)
    names = ['out', 'grad base', 'grad low', 'grad up', 'grad down']
    for name, g, w, bound in zip(names, got, want, bounds):
        bound.check(g, f'kernel {name}')
        bound.check(w, f'ops {name}')


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
    # the upstream gradient came in bfloat16 (its rounding carried through), the answers
    # are rounded to bfloat16
    narrow_grad = Bounded(grad, unit_roundoff(torch.bfloat16) * grad.abs())
    bounds = bounded_task_mlp(*wide, grad)
    narrow_bounds = bounded_task_mlp(*wide, narrow_grad)
    names = ['out', 'grad base', 'grad low', 'grad up', 'grad down']
    results = zip(names, [got] + [t.grad for t in narrow], [want] + [t.grad for t in wide],
                  bounds, narrow_bounds)
    for name, g, w, bound, narrow_bound in results:
        bound.check(w, f'float32 {name}')
        narrow_bound.rounded_to(torch.bfloat16).check(g, f'bfloat16 {name}')
