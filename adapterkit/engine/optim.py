"""Mixed precision that also runs on CPU (mmengine's AmpOptimWrapper is GPU-only), and the
optimizer's construction logged in one line."""
import logging
from collections import Counter
from contextlib import contextmanager

import torch
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from ..errors import LaunchError
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS


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


class _PerParameterLines(logging.Filter):
    """Drops the lines mmengine's constructor logs for every parameter."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith('paramwise_options -- ')
                    or message.endswith('is skipped since its requires_grad=False'))


# Under mmengine's own name in scope 'adapterkit': every config gets it without naming it.
@OPTIM_WRAPPER_CONSTRUCTORS.register_module(name='DefaultOptimWrapperConstructor')
class SummaryOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, the same parameter groups, but one log line for
    them instead of a line per parameter (a parameter-efficient model has hundreds of
    frozen ones, each "skipped since its requires_grad=False")."""

    def __call__(self, model: torch.nn.Module) -> OptimWrapper:
        logger = MMLogger.get_current_instance()
        quiet = _PerParameterLines()
        logger.addFilter(quiet)
        try:
            wrapper = super().__call__(model)
        finally:
            logger.removeFilter(quiet)
        logger.info(optimizer_summary(getattr(model, 'module', model), wrapper.optimizer))
        return wrapper


def optimizer_summary(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """One line: what trains, the options that differ from the optimizer's defaults (how
    many tensors have each), and what is left out as frozen."""
    trained = [p for group in optimizer.param_groups for p in group['params']]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    options = Counter(f'{key}={value}' for group in optimizer.param_groups
                      for key, value in group.items()
                      if key != 'params' and value != optimizer.defaults.get(key, value)
                      for _ in group['params'])
    own = ', '.join(f'{option} for {count}' for option, count in sorted(options.items()))
    return (f'optimizer {type(optimizer).__name__}: {sum(p.numel() for p in trained):,} '
            f'parameters in {len(trained)} tensors train{f" ({own})" if own else ""}; '
            f'{sum(p.numel() for p in frozen):,} frozen parameters in {len(frozen)} tensors '
            'are left out')
