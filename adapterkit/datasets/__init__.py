"""Data sets (PASCAL-MT layout), multi-task transforms and the synthetic data generator."""
from .pascal_mt import PascalMTDataset
from .synthetic import synthesize
from .transforms import (MultiTaskRandomFlip, MultiTaskRandomScaleRotate, MultiTaskResize,
                         PackMultiTaskInputs)

__all__ = ['PascalMTDataset', 'MultiTaskRandomFlip', 'MultiTaskRandomScaleRotate',
           'MultiTaskResize', 'PackMultiTaskInputs', 'synthesize']
