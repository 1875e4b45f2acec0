"""Semantic segmentation (PASCAL: 21 classes, 0 = background)."""
from ..registry import TASKS
from .base import SegmentationTask


@TASKS.register_module(name='semseg')
class SemSeg(SegmentationTask):
    name = 'semseg'
    num_outputs = 21
    label_kind = 'mask'
    metrics = {'mIoU': True}
    primary_metric = 'mIoU'
