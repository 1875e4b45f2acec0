from .hooks import SaveMetricsHook, SavePredictionsHook
from .optim import AutocastOptimWrapper, amp_optim_wrapper

__all__ = ['SaveMetricsHook', 'SavePredictionsHook', 'AutocastOptimWrapper', 'amp_optim_wrapper']
