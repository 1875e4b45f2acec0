from .distributed import FSDPGradClipHook
from .hooks import SaveMetricsHook, SavePredictionsHook
from .optim import AutocastOptimWrapper, SummaryOptimWrapperConstructor, amp_optim_wrapper

__all__ = ['FSDPGradClipHook', 'SaveMetricsHook', 'SavePredictionsHook', 'AutocastOptimWrapper',
           'amp_optim_wrapper', 'SummaryOptimWrapperConstructor']
