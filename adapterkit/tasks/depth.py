"""Depth in metres (0 = invalid)."""
from ..registry import TASKS
from .base import Task


@TASKS.register_module(name='depth')
class Depth(Task):
    name = 'depth'
    num_outputs = 1
    label_kind = 'depth'
    metrics = {'rmse': False}
    primary_metric = 'rmse'
