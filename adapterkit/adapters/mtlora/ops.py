"""MTLoRA's task MLPs: from fc1's task low-rank term to fc2's without the hidden layer.

``task_hidden_down`` computes ``down2_t GELU(base + up1_t low1_t)`` for every task stream
(shapes as in ``layers/task_lowrank.py``: base (M, hidden), low (T, M, r), up (T, hidden, r),
down (T, r2, hidden)): the task streams of an MLP from fc1's low-rank term to fc2's, where
the hidden layer is widest. It keeps that (T, M, hidden) layer out of memory (backward
recomputes it) and in cache: on CPU with exact GELU the C kernel ``task_mlp.c`` computes it
row by row, otherwise PyTorch ops do, on CPU in cache-sized blocks of rows. It computes
outside autocast, in the dtype its wrapper casts to (autocast's where it is on, as for the
frozen products). The other task products (``task_down``, ``task_up``) are general and live
in ``layers/task_lowrank.py``.
"""
import ctypes
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ...layers import native
from ...layers.task_lowrank import no_autocast, rank_major

_BLOCK_BYTES = 2 << 20


def _row_blocks(base: torch.Tensor):
    """Row slices of ``base``: on CPU blocks that fit the cache (2 MB); on a GPU all rows at
    once (there a kernel launch costs more than the memory traffic saved)."""
    rows, width = base.shape
    step = max(1, _BLOCK_BYTES // (width * base.element_size())) if base.device.type == 'cpu' \
        else rows
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


class _TaskMLPKernel:
    """``_TaskHiddenDown`` on CPU with exact GELU, fused into one pass per row by the C
    kernel ``task_mlp.c``. It computes in float32 (bfloat16 and float16 operands, as
    under autocast, are widened and the results narrowed again), and its rank is fixed at 4:
    smaller task ranks are zero-padded to it, which changes no product."""

    DTYPES = (torch.float32, torch.bfloat16, torch.float16)

    SOURCE = Path(__file__).with_name('task_mlp.c')

    def __init__(self, library: ctypes.CDLL):
        self.library = library
        self.rank = library.task_mlp_rank()
        pointer, count = ctypes.c_void_p, ctypes.c_int64
        library.task_mlp_forward.argtypes = [pointer] * 5 + [count] * 3 + [ctypes.c_int]
        library.task_mlp_backward.argtypes = [pointer] * 8 + [count] * 3 + [ctypes.c_int]

    @classmethod
    def get(cls, base: torch.Tensor, low: torch.Tensor, approximate: str
            ) -> Optional['_TaskMLPKernel']:
        """The kernel where it applies and could be built, else None."""
        if base.device.type != 'cpu' or base.dtype not in cls.DTYPES or approximate != 'none':
            return None
        kernel = native.load(cls.SOURCE, cls)
        return kernel if kernel is not None and low.shape[-1] <= kernel.rank else None

    def _operands(self, low, up, down):
        """low (T, M, R), up transposed (T, R, H) and down (T, R, H), float32 and
        contiguous, their rank R zero-padded to the kernel's."""
        pad = self.rank - low.shape[-1]
        return (F.pad(low.float(), (0, pad)).contiguous(),
                F.pad(up.float().transpose(1, 2), (0, 0, 0, pad)).contiguous(),
                F.pad(down.float(), (0, 0, 0, pad)).contiguous())

    def forward(self, base, low, up, down):
        tasks, rows, rank = low.shape
        dtype, base = base.dtype, base.float().contiguous()
        low, up_t, down = self._operands(low, up, down)
        out = base.new_empty(tasks, rows, self.rank)
        self.library.task_mlp_forward(base.data_ptr(), low.data_ptr(), up_t.data_ptr(),
                                      down.data_ptr(), out.data_ptr(), tasks, rows,
                                      base.shape[1], torch.get_num_threads())
        return out[..., :rank].to(dtype)

    def backward(self, base, low, up, down, grad_out):
        tasks, rows, rank = low.shape
        width, threads = base.shape[1], torch.get_num_threads()
        dtype, base = base.dtype, base.float().contiguous()
        low, up_t, down = self._operands(low, up, down)
        grad_out = F.pad(grad_out.float(), (0, self.rank - rank)).contiguous()
        grad_base, grad_low = torch.empty_like(base), torch.empty_like(low)
        size = tasks * self.rank * width
        workspace = base.new_zeros(threads, 2 * size + width)  # see task_mlp_backward
        self.library.task_mlp_backward(
            base.data_ptr(), low.data_ptr(), up_t.data_ptr(), down.data_ptr(),
            grad_out.data_ptr(), grad_base.data_ptr(), grad_low.data_ptr(),
            workspace.data_ptr(), tasks, rows, width, threads)
        grad_up_t, grad_down = workspace[:, :2 * size].sum(0).view(2, tasks, self.rank, width)
        return tuple(grad.to(dtype) for grad in (
            grad_base, grad_low[..., :rank], grad_up_t[:, :rank].transpose(1, 2),
            grad_down[:, :rank]))


class _TaskHiddenDown(torch.autograd.Function):
    """low2_t = down2_t act(base + up1_t low1_t), saving only its inputs: the (T, M, hidden)
    layer never exists whole. On CPU (exact GELU, task ranks up to 4) the C kernel
    computes it row by row, in float32; otherwise PyTorch ops do, on CPU in cache-sized
    blocks of rows (``_row_blocks``)."""

    @staticmethod
    def forward(ctx, base, low, up, down, approximate):
        ctx.save_for_backward(base, low, up, down)
        ctx.approximate = approximate
        with no_autocast(base):
            kernel = _TaskMLPKernel.get(base, low, approximate)
            if kernel is not None:
                return kernel.forward(base, low, up, down)
            out = base.new_empty(len(low), low.shape[1], down.shape[1])
            for task in range(len(low)):
                for rows in _row_blocks(base):
                    pre = torch.addmm(base[rows], low[task, rows], up[task].t())
                    hidden = torch.ops.aten.gelu_(pre, approximate=approximate)
                    torch.mm(hidden, down[task].t(), out=out[task, rows])
            return out

    @staticmethod
    def backward(ctx, grad_low2):
        base, low, up, down = ctx.saved_tensors
        approximate = ctx.approximate
        with no_autocast(grad_low2):
            kernel = _TaskMLPKernel.get(base, low, approximate)
            if kernel is not None:
                return (*kernel.backward(base, low, up, down, grad_low2), None)
            grad_low2 = grad_low2.contiguous()
            grad_base = torch.zeros_like(base) if ctx.needs_input_grad[0] else None
            grad_low = torch.empty_like(low)
            grad_up_t = up.new_zeros(up.shape[0], up.shape[2], up.shape[1])  # (T, r, out)
            grad_down = torch.zeros_like(down)
            up = rank_major(up)
            for task in range(len(low)):
                for rows in _row_blocks(base):
                    pre = torch.addmm(base[rows], low[task, rows], up[task].t())  # again
                    hidden = F.gelu(pre, approximate=approximate)
                    grad_out = grad_low2[task, rows]
                    grad_down[task].addmm_(grad_out.t(), hidden)
                    grad_pre = torch.ops.aten.gelu_backward(grad_out @ down[task], pre,
                                                            approximate=approximate)
                    if grad_base is not None:
                        grad_base[rows] += grad_pre
                    torch.mm(grad_pre, up[task], out=grad_low[task, rows])
                    grad_up_t[task].addmm_(low[task, rows].t(), grad_pre)
        return grad_base, grad_low, grad_up_t.transpose(1, 2), grad_down, None


def task_hidden_down(base: torch.Tensor, low: torch.Tensor, up: torch.Tensor,
                     down: torch.Tensor, approximate: str = 'none') -> torch.Tensor:
    """``down2_t GELU(base + up1_t low1_t)``, (T, M, r2): the task streams of an MLP from
    fc1's low-rank term to fc2's, where the hidden layer is widest. The hidden layer is
    recomputed in backward instead of kept (two (T, M, hidden) tensors per MLP less), and
    on CPU it is computed in cache-sized blocks of rows, so the GELU and its
    gradient run on blocks in cache instead of streaming them through memory."""
    dtype = base.dtype
    return _TaskHiddenDown.apply(base, low.to(dtype), up.to(dtype), down.to(dtype),
                                 approximate)
