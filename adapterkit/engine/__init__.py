from .distributed import FSDPGradClipHook
from .hooks import FiniteLossHook, SafeCheckpointHook, SaveMetricsHook, SavePredictionsHook
from .optim import AutocastOptimWrapper, amp_optim_wrapper

__all__ = ['FSDPGradClipHook', 'FiniteLossHook', 'SafeCheckpointHook', 'SaveMetricsHook',
           'SavePredictionsHook', 'AutocastOptimWrapper', 'amp_optim_wrapper']
