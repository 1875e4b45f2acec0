from .distributed import FSDPGradClipHook
from .hooks import LogPredictionsHook, SaveMetricsHook, SavePredictionsHook
from .optim import AutocastOptimWrapper, SummaryOptimWrapperConstructor, amp_optim_wrapper
from .visualization import MultiTaskVisualizer

__all__ = ['FSDPGradClipHook', 'LogPredictionsHook', 'MultiTaskVisualizer', 'SaveMetricsHook',
           'SavePredictionsHook', 'AutocastOptimWrapper', 'amp_optim_wrapper',
           'SummaryOptimWrapperConstructor']
