"""Semantic boundaries (binary; one logit)."""
from ..registry import TASKS
from .base import Task


@TASKS.register_module(name='edge')
class Edge(Task):
    name = 'edge'
    num_outputs = 1
    label_kind = 'mask'
    metrics = {'odsF': True}
    primary_metric = 'odsF'
