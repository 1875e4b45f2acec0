"""Data sets (PASCAL-MT layout, id subsets of any), multi-task transforms and the synthetic data
generator."""
from .pascal_mt import PascalMTDataset
from .subset import SubsetDataset, holdout_ids
from .synthetic import synthesize
from .transforms import (MultiTaskRandomFlip, MultiTaskRandomScaleRotate, MultiTaskResize,
                         PackMultiTaskInputs)

__all__ = ['PascalMTDataset', 'SubsetDataset', 'holdout_ids', 'MultiTaskRandomFlip',
           'MultiTaskRandomScaleRotate', 'MultiTaskResize', 'PackMultiTaskInputs', 'synthesize']
