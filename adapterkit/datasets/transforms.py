"""Multi-task transforms: move the image and every target of a sample together.

A sample is ``{'img': HxWx3 uint8 RGB, 'gt': {task: array}, 'img_id', 'ori_shape', 'img_shape'}``.
How a target is resampled follows its task in ``TASKS`` (``label_kind``, ``ignore_index``):

* 'mask' (uint8 labels): nearest neighbour, so no new label value appears;
* 'normals' (float32 HxWx3, ignore_index in every channel of an ignored pixel): cubic on the
  valid vectors only, then renormalised, so an ignored pixel never bleeds into a valid one;
* 'depth' (float32 HxW, 0 = invalid): nearest neighbour.

The image is resampled with cubic interpolation (saturated to 0..255 by OpenCV).
"""
from typing import Callable, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from ..errors import ConfigError, DataError, UnknownNameError
from ..registry import TASKS, TRANSFORMS

LABEL_KINDS = ('mask', 'normals', 'depth')


def task_info(task: str) -> Tuple[str, int]:
    """(label_kind, ignore_index) of ``task``: how its target is treated."""
    task_cls = TASKS.get(task)
    if task_cls is None:
        raise UnknownNameError(f'unknown task {task!r} in the sample; registered tasks: '
                               f'{sorted(TASKS.module_dict)}', task=task)
    if task_cls.label_kind not in LABEL_KINDS:
        raise ConfigError(f'task {task!r} has label_kind {task_cls.label_kind!r}, '
                          f'expected one of {LABEL_KINDS}', task=task)
    return task_cls.label_kind, task_cls.ignore_index


def _resample_normals(normals: np.ndarray, ignore: int, warp: Callable) -> np.ndarray:
    """Apply ``warp(array, interpolation)`` to normals without mixing in ignored pixels."""
    valid = normals[..., 0] != ignore
    vectors = np.where(valid[..., None], normals, 0).astype(np.float32)
    valid = warp(valid.astype(np.uint8), cv2.INTER_NEAREST).astype(bool)
    vectors = warp(vectors, cv2.INTER_CUBIC)
    norm = np.linalg.norm(vectors, axis=2)
    keep = valid & (norm > 1e-6)
    out = np.full_like(vectors, ignore)
    out[keep] = vectors[keep] / norm[keep][:, None]
    return out


def _resample(target: np.ndarray, task: str, warp: Callable) -> np.ndarray:
    kind, ignore = task_info(task)
    if kind == 'normals':
        return _resample_normals(target, ignore, warp)
    return warp(target, cv2.INTER_NEAREST)


def _pair(value, name: str) -> Tuple[float, float]:
    if len(value) != 2 or value[0] > value[1]:
        raise ConfigError(f'{name} must be a (low, high) pair, got {value!r}', option=name)
    return float(value[0]), float(value[1])


@TRANSFORMS.register_module()
class MultiTaskRandomFlip(BaseTransform):
    """Horizontal flip with probability ``prob``; the x component of normals changes sign."""

    def __init__(self, prob: float = 0.5):
        if not 0.0 <= prob <= 1.0:
            raise ConfigError(f'prob must be in [0, 1], got {prob}', option='prob')
        self.prob = prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        results['img'] = np.ascontiguousarray(results['img'][:, ::-1])
        for task, target in results['gt'].items():
            flipped = np.ascontiguousarray(target[:, ::-1])
            kind, ignore = task_info(task)
            if kind == 'normals':
                flipped[flipped[..., 0] != ignore, 0] *= -1
            results['gt'][task] = flipped
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob})'


@TRANSFORMS.register_module()
class MultiTaskRandomScaleRotate(BaseTransform):
    """One random rotation (degrees) and scale about the image centre, same output size.

    Uncovered pixels get 0 in the image and in every target, as the reference does; a mask
    that is entirely ignored (e.g. human parts of an image without a person) stays ignored.
    Normal vectors move with their pixels but are not rotated, as in the reference.
    """

    def __init__(self, rotation: Sequence[float] = (-20, 20),
                 scale: Sequence[float] = (0.75, 1.25)):
        self.rotation = _pair(rotation, 'rotation')
        self.scale = _pair(scale, 'scale')

    def transform(self, results: dict) -> dict:
        angle = np.random.uniform(*self.rotation)
        scale = np.random.uniform(*self.scale)
        h, w = results['img'].shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)

        def warp(array, interpolation):
            return cv2.warpAffine(array, matrix, (w, h), flags=interpolation,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)

        results['img'] = warp(results['img'], cv2.INTER_CUBIC)
        for task, target in results['gt'].items():
            kind, ignore = task_info(task)
            if kind == 'mask' and (target == ignore).all():
                continue
            results['gt'][task] = _resample(target, task, warp)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(rotation={self.rotation}, scale={self.scale})'


@TRANSFORMS.register_module()
class MultiTaskResize(BaseTransform):
    """Resize to ``size`` = (height, width) (an int means square), ignoring the aspect ratio."""

    def __init__(self, size: Union[int, Sequence[int]] = (448, 448)):
        size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f'size must be (height, width) of positive ints, got {size!r}',
                              option='size')
        self.size = size

    def transform(self, results: dict) -> dict:
        h, w = self.size

        def warp(array, interpolation):
            return cv2.resize(array, (w, h), interpolation=interpolation)

        results['img'] = warp(results['img'], cv2.INTER_CUBIC)
        for task, target in results['gt'].items():
            results['gt'][task] = _resample(target, task, warp)
        results['img_shape'] = (h, w)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(size={self.size})'


@TRANSFORMS.register_module()
class PackMultiTaskInputs(BaseTransform):
    """Last transform: tensors for the model.

    Returns ``{'inputs': uint8 (3, H, W) RGB, 'data_samples': {'gt': {task: tensor},
    'img_id', 'ori_shape', 'img_shape'}}`` with int64 (H, W) masks, float32 (3, H, W) normals
    and float32 (1, H, W) depth.
    """

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise DataError(f'PackMultiTaskInputs expects an HxWx3 uint8 image, got '
                            f'{img.dtype} {img.shape}')
        gt = {}
        for task, target in results['gt'].items():
            kind, _ = task_info(task)
            if kind == 'mask':
                gt[task] = torch.from_numpy(target.astype(np.int64))
            elif kind == 'normals':
                gt[task] = torch.from_numpy(np.ascontiguousarray(target.transpose(2, 0, 1),
                                                                 dtype=np.float32))
            else:
                gt[task] = torch.from_numpy(target.astype(np.float32)[None])
        return dict(
            inputs=torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            data_samples=dict(gt=gt, img_id=results['img_id'],
                              ori_shape=tuple(results['ori_shape']),
                              img_shape=tuple(results['img_shape'])))
