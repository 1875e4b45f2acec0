# compat.py's shims first: the modules below import mmengine's Runner and optimizers
from .. import registry  # noqa: F401
from .distributed import FSDPGradClipHook
from .hooks import (FiniteLossHook, LogPredictionsHook, SafeCheckpointHook, SaveMetricsHook,
                    SavePredictionsHook)
from .optim import AutocastOptimWrapper, SummaryOptimWrapperConstructor, amp_optim_wrapper
from .visualization import MultiTaskVisualizer

__all__ = ['FSDPGradClipHook', 'FiniteLossHook', 'LogPredictionsHook', 'MultiTaskVisualizer',
           'SafeCheckpointHook', 'SaveMetricsHook', 'SavePredictionsHook',
           'AutocastOptimWrapper', 'amp_optim_wrapper', 'SummaryOptimWrapperConstructor']
