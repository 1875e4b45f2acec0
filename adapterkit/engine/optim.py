"""Mixed precision that also runs on CPU (mmengine's AmpOptimWrapper is GPU-only)."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from ..errors import LaunchError
from ..registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Run forward passes under ``torch.autocast`` in ``dtype`` on the model's device.

    bfloat16 has fp32's exponent range, so no loss scaling is needed; fp16 on CUDA
    should use mmengine's ``AmpOptimWrapper`` (dynamic loss scaling) instead.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs):
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        device = next(model.parameters()).device.type
        with super().optim_context(model), torch.autocast(device, dtype=self.cast_dtype):
            yield


def amp_dtype(device: str) -> torch.dtype:
    """The mixed precision ``--amp`` takes on ``device``: bf16 where supported (CPU,
    Ampere+ GPUs), else fp16."""
    if device == 'cuda' and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def amp_autocast(device: str, enabled: bool = True) -> torch.autocast:
    """The autocast of ``--amp`` on ``device`` (in ``amp_dtype``); off unless ``enabled``."""
    return torch.autocast(device, amp_dtype(device), enabled=enabled)


def amp_optim_wrapper(cfg: dict, device: str) -> dict:
    """Turn an OptimWrapper config into its mixed-precision form for ``device`` (see
    ``amp_dtype``): bf16 autocast, or fp16 with loss scaling."""
    cfg = dict(cfg)
    if cfg.get('type') == 'DeepSpeedOptimWrapper':
        raise LaunchError('--amp does not apply to DeepSpeed: its strategy sets the precision '
                          '(bf16=dict(enabled=True) or fp16=dict(enabled=True))', option='--amp')
    if amp_dtype(device) == torch.float16:
        cfg.update(type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic')
    else:
        cfg.update(type='AutocastOptimWrapper', dtype='bfloat16')
    return cfg
