"""Keeping a recipe instead of a tensor for backward."""
import contextlib
from typing import Callable

import torch


def recompute_in_backward(tensor: torch.Tensor, recompute: Callable[[], torch.Tensor]):
    """Within this context, autograd keeps ``recompute`` in place of ``tensor`` wherever it
    saves it for backward, and calls it (without grad, under the autocast state of the
    forward pass) when backward needs the tensor: for a tensor that is cheap to redo from
    others that backward keeps anyway. ``recompute`` must give the same values. Under
    torch.compile it does nothing (the compiler chooses what to recompute itself, and cannot
    trace saved-tensor hooks)."""
    if torch.compiler.is_compiling():
        return contextlib.nullcontext()
    return _RecomputeHooks(tensor, recompute)


class _RecomputeHooks(torch.autograd.graph.saved_tensors_hooks):
    def __init__(self, tensor: torch.Tensor, recompute: Callable[[], torch.Tensor]):
        # autograd keeps the pack hook as long as what it packed: the hook must not hold
        # `tensor` itself, or the tensor would outlive the context it was meant to leave
        address, numel, layout = tensor.data_ptr(), tensor.numel(), _layout(tensor)
        contiguous = tensor.is_contiguous()
        device = tensor.device.type
        autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))

        def pack(saved):  # the tensor itself, or a reshaped view of all of it
            if saved.data_ptr() != address or saved.numel() != numel:
                return saved
            if _layout(saved) == layout:
                return _Recompute(recompute, None, autocast)
            if saved.is_contiguous() and contiguous:
                return _Recompute(recompute, saved.shape, autocast)
            return saved

        def unpack(packed):
            return packed() if isinstance(packed, _Recompute) else packed

        super().__init__(pack, unpack)


def _layout(tensor: torch.Tensor):
    return tensor.shape, tensor.stride()


class _Recompute:
    def __init__(self, recompute, shape, autocast):
        self.recompute, self.shape, self.autocast = recompute, shape, autocast

    def __call__(self):
        device, dtype, enabled = self.autocast
        with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
            out = self.recompute()
        return out if self.shape is None else out.reshape(self.shape)
