"""Task-batched low-rank products: T streams, each with its own low-rank factors, in one call.

T streams of M rows each are stacked task-major, (T, M, features), and every stream t has
its own factors: ``down_t`` (r x in) and ``up_t`` (out x r). ``task_down`` computes
``down_t u_t`` and ``task_up`` ``base + up_t low_t`` for all streams, with hand-written
backward passes, because autograd's own gradients of these batched products are slow on
CPU in two places: the gradient of ``down`` multiplies (in, M) by (M, r) batches, 6x slower
than the (r, M) by (M, in) used here, and products whose inner dimension is r run 2x faster
as one GEMM per stream than as one batched call. Both compute outside autocast, in the
dtype their wrappers below cast to (autocast's where it is on).

Shapes: base (M, out); inputs (T, M, in), or (M, in) read by every stream; down (T, r, in);
up (T, out, r); low (T, M, r). ``task_add_up`` adds ``up_t low_t`` into a base of every
stream's own, (T, M, out), in place (a per-task LoRA layer's frozen output). Used by MTLoRA's
task branches (``adapters/mtlora/``) and LoRA's per-task forward (``adapters/lora.py``); any
method with per-stream low-rank factors can use them.
"""
import torch
import torch.nn.functional as F


def no_autocast(tensor: torch.Tensor):
    return torch.autocast(tensor.device.type, enabled=False)


def rank_major(up: torch.Tensor) -> torch.Tensor:
    """``up`` (T, out, r) with the same values, stored rank-major: CPU BLAS multiplies
    (M, out) by (out, r) 2.5-3x faster when that operand is the transpose of a contiguous
    (r, out) than when it is a contiguous (out, r)."""
    return up.transpose(1, 2).contiguous().transpose(1, 2)


def _up(base: torch.Tensor, low: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``base + up_t low_t`` of every task: one GEMM per task into the output."""
    out = base.new_empty(len(low), *base.shape)
    for task in range(len(low)):
        torch.addmm(base, low[task], up[task].t(), out=out[task])
    return out


class _TaskDown(torch.autograd.Function):
    """low_t = down_t u_t."""

    @staticmethod
    def forward(ctx, inputs, down):
        ctx.save_for_backward(inputs, down)
        with no_autocast(inputs):
            if inputs.dim() == 3:
                return torch.bmm(inputs, down.transpose(1, 2))
            # one product against all tasks' down at once, then split by task
            low = F.linear(inputs, down.flatten(0, 1)).view(len(inputs), len(down), -1)
            return low.transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx, grad_low):
        inputs, down = ctx.saved_tensors
        count, rows, rank = grad_low.shape
        grad_inputs = None
        with no_autocast(grad_low):
            if inputs.dim() == 3:
                grad_down = torch.bmm(grad_low.transpose(1, 2), inputs)
                if ctx.needs_input_grad[0]:
                    grad_inputs = inputs.new_empty(inputs.shape)
                    for task in range(count):
                        torch.mm(grad_low[task], down[task], out=grad_inputs[task])
            else:
                grad_down = (grad_low.transpose(1, 2).reshape(count * rank, rows) @ inputs
                             ).view(count, rank, -1)
                if ctx.needs_input_grad[0]:
                    grad_inputs = (grad_low.transpose(0, 1).reshape(rows, count * rank)
                                   @ down.flatten(0, 1))
        return grad_inputs, grad_down


class _TaskUp(torch.autograd.Function):
    """base + up_t low_t."""

    @staticmethod
    def forward(ctx, base, low, up):
        ctx.save_for_backward(low, up)
        with no_autocast(base):
            return _up(base, low, up)

    @staticmethod
    def backward(ctx, grad):
        low, up = ctx.saved_tensors
        with no_autocast(grad):
            grad = grad.contiguous()
            grad_base = grad.sum(0) if ctx.needs_input_grad[0] else None
            grad_up = torch.bmm(low.transpose(1, 2), grad).transpose(1, 2)
            return grad_base, torch.bmm(grad, rank_major(up)), grad_up


class _TaskAddUp(torch.autograd.Function):
    """base_t += up_t low_t, in place: no output-sized copy or pass beyond the GEMM."""

    @staticmethod
    def forward(ctx, base, low, up):
        ctx.save_for_backward(low, up)
        ctx.mark_dirty(base)
        with no_autocast(base):
            base.view(*low.shape[:2], -1).baddbmm_(low, up.transpose(1, 2))
        return base

    @staticmethod
    def backward(ctx, grad):
        low, up = ctx.saved_tensors
        with no_autocast(grad):
            rows = grad.contiguous().view(*low.shape[:2], -1)
            grad_up = torch.bmm(low.transpose(1, 2), rows).transpose(1, 2)
            return grad, torch.bmm(rows, rank_major(up)), grad_up


def task_down(inputs: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """``down_t u_t`` of every task, (T, M, r), in autocast's dtype where it is on."""
    device = inputs.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) \
        else inputs.dtype
    return _TaskDown.apply(inputs.to(dtype), down.to(dtype))


def task_up(base: torch.Tensor, low: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``base + up_t low_t`` of every task, (T, M, out)."""
    return _TaskUp.apply(base, low.to(base.dtype), up.to(base.dtype))


def task_add_up(base: torch.Tensor, low: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``base_t + up_t low_t`` of every task, written into ``base`` (T*M rows of out, in
    any shape), which no other op may need unchanged (the output of a linear map is such a
    tensor). ``base`` itself, not a view of it: autograd would copy a view's base."""
    return _TaskAddUp.apply(base, low.to(base.dtype), up.to(base.dtype))
