from .hooks import SavePredictionsHook
from .optim import AutocastOptimWrapper, amp_optim_wrapper

__all__ = ['SavePredictionsHook', 'AutocastOptimWrapper', 'amp_optim_wrapper']
