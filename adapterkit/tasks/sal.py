"""Saliency (binary; one logit)."""
from ..registry import TASKS
from .base import Task


@TASKS.register_module(name='sal')
class Saliency(Task):
    name = 'sal'
    num_outputs = 1
    label_kind = 'mask'
    metrics = {'mIoU': True, 'maxF': True}
    primary_metric = 'mIoU'
