from .multitask_metric import MultiTaskMetric, delta_m

__all__ = ['MultiTaskMetric', 'delta_m']
