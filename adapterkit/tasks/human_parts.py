"""Human-part segmentation (7 classes, 0 = background)."""
from ..registry import TASKS
from .base import SegmentationTask


@TASKS.register_module(name='human_parts')
class HumanParts(SegmentationTask):
    name = 'human_parts'
    num_outputs = 7
    label_kind = 'mask'
    metrics = {'mIoU': True}
    primary_metric = 'mIoU'
