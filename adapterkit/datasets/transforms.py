"""Multi-task transforms: move the image and every target of a sample together.

A sample is ``{'img': HxWx3 uint8 RGB, 'gt': {task: array}, 'img_id', 'ori_shape', 'img_shape'}``.
How a target is resampled follows its task in ``TASKS`` (``label_kind``, ``ignore_index``):

* 'mask' (uint8 labels): nearest neighbour, so no new label value appears;
* 'normals' (float32 HxWx3, ignore_index in every channel of an ignored pixel): cubic on the
  valid vectors only, then renormalised, so an ignored pixel never bleeds into a valid one;
  a rotation of the image also turns the vectors (see ``MultiTaskRandomScaleRotate``);
* 'depth' (float32 HxW, 0 = invalid): nearest neighbour, divided by the zoom of a scaling.

The image is resampled with cubic interpolation (saturated to 0..255 by OpenCV).
``MultiTaskRandomAffine`` does flip, scale-rotate and resize in one resampling per map, in
the data loader worker or, with ``on_device=True``, batched on the GPU by the data
preprocessor (``device_affine.py``). docs/data.md compares both with the reference code.
"""
from typing import Callable, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from ..errors import ConfigError, DataError, UnknownNameError
from ..registry import TASKS, TRANSFORMS

LABEL_KINDS = ('mask', 'normals', 'depth')


def task_info(task: str) -> Tuple[str, int]:
    """(label_kind, ignore_index) of ``task``: how its target is treated."""
    if task not in _TASK_INFO:  # a registry lookup per map and transform adds up
        _TASK_INFO[task] = _lookup_task(task)
    return _TASK_INFO[task]


_TASK_INFO = {}


def _lookup_task(task: str) -> Tuple[str, int]:
    task_cls = TASKS.get(task)
    if task_cls is None:
        raise UnknownNameError(f'unknown task {task!r} in the sample; registered tasks: '
                               f'{sorted(TASKS.module_dict)}', task=task)
    if task_cls.label_kind not in LABEL_KINDS:
        raise ConfigError(f'task {task!r} has label_kind {task_cls.label_kind!r}, '
                          f'expected one of {LABEL_KINDS}', task=task)
    return task_cls.label_kind, task_cls.ignore_index


def _resample_normals(normals: np.ndarray, ignore: int, warp: Callable,
                      turn: Optional[np.ndarray] = None) -> np.ndarray:
    """Apply ``warp(array, interpolation)`` to normals without mixing in ignored pixels.

    ``turn``, a 2x2 matrix, maps the in-plane (x, y) components of every vector. float32 and
    OpenCV throughout: numpy's norms and masked assignments over HxWx3 cost more than the warp.
    """
    normals = np.ascontiguousarray(normals, dtype=np.float32)
    valid = (normals[..., 0] != ignore).view(np.uint8)
    # Ignored pixels hold ignore_index (> 1) in every channel, valid components lie in [-1, 1].
    vectors = cv2.threshold(normals, min(ignore, 2) - 1e-3, 0, cv2.THRESH_TOZERO_INV)[1]
    vectors = warp(vectors, cv2.INTER_CUBIC)
    valid = warp(valid, cv2.INTER_NEAREST).view(bool)
    if turn is not None:
        # cv2.transform applies a 3x3 matrix to every pixel's vector; z is left as it is.
        vectors = cv2.transform(vectors, _in_plane(turn))
    norm = cv2.sqrt(cv2.transform(cv2.multiply(vectors, vectors), _SUM3))
    keep = valid & (norm > 1e-6)
    inverse = np.divide(1, norm, out=np.zeros_like(norm), where=keep)
    out = cv2.multiply(vectors, cv2.merge((inverse, inverse, inverse)))  # 0 where not kept
    return cv2.add(out, (ignore, ignore, ignore, 0), dst=out, mask=(~keep).view(np.uint8))


_SUM3 = np.ones((1, 3), np.float32)


def _in_plane(turn: np.ndarray) -> np.ndarray:
    matrix = np.eye(3, dtype=np.float32)
    matrix[:2, :2] = turn
    return matrix


def _resample(target: np.ndarray, task: str, warp: Callable,
              turn: Optional[np.ndarray] = None) -> np.ndarray:
    kind, ignore = task_info(task)
    if kind == 'normals':
        return _resample_normals(target, ignore, warp, turn)
    return warp(target, cv2.INTER_NEAREST)


def _size(size) -> Tuple[int, int]:
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f'size must be (height, width) of positive ints, got {size!r}',
                          option='size')
    return size


def _choices(values) -> Optional[Tuple[float, ...]]:
    if values is None:
        return None
    values = tuple(float(v) for v in values)
    if not values or min(values) <= 0:
        raise ConfigError(f'scale_choices must be positive scales, got {values!r}',
                          option='scale_choices')
    return values


def _draw_scale(scale_range: Tuple[float, float], choices) -> float:
    if choices is None:
        return np.random.uniform(*scale_range)
    return choices[np.random.randint(len(choices))]


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
    The angle is OpenCV's (``cv2.getRotationMatrix2D``: positive turns the picture
    counter-clockwise on screen). As in the reference (ScaleNRotate of ASTMT / MTLoRA), normal
    vectors turn with the picture: their in-plane components (x right, y down) are mapped by
    the rotation that moves the pixels, ``(x, y) -> (c x + s y, -s x + c y)`` with
    ``c, s = cos(angle), sin(angle)``; z is unchanged and the scale does not change a normal.
    Depth is divided by the scale: zooming in by s brings the scene s times closer (the
    reference's rule too).

    ``scale_choices``, when given, draws the scale uniformly from these values instead of
    the ``scale`` range (NYUD's protocol: 1.0, 1.2 or 1.5).
    """

    def __init__(self, rotation: Sequence[float] = (-20, 20),
                 scale: Sequence[float] = (0.75, 1.25),
                 scale_choices: Optional[Sequence[float]] = None):
        self.rotation = _pair(rotation, 'rotation')
        self.scale = _pair(scale, 'scale')
        self.scale_choices = _choices(scale_choices)

    def transform(self, results: dict) -> dict:
        angle = np.random.uniform(*self.rotation)
        return scale_rotate(results, angle, _draw_scale(self.scale, self.scale_choices))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(rotation={self.rotation}, scale={self.scale}, '
                f'scale_choices={self.scale_choices})')


def scale_rotate(results: dict, angle: float, scale: float) -> dict:
    """Rotate by ``angle`` degrees and scale by ``scale`` about the centre, in place (the
    deterministic part of ``MultiTaskRandomScaleRotate``)."""
    h, w = results['img'].shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    turn = matrix[:, :2] / scale  # the rotation alone, for normal vectors

    def warp(array, interpolation):
        return cv2.warpAffine(array, matrix, (w, h), flags=interpolation,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    results['img'] = warp(results['img'], cv2.INTER_CUBIC)
    for task, target in results['gt'].items():
        kind, ignore = task_info(task)
        if kind == 'mask' and (target == ignore).all():
            continue
        target = _resample(target, task, warp, turn)
        results['gt'][task] = target / np.float32(scale) if kind == 'depth' else target
    return results


@TRANSFORMS.register_module()
class MultiTaskRandomAffine(BaseTransform):
    """Flip, scale-rotate and resize in ONE resampling per map: the paper's train augmentation.

    Draws exactly what ``MultiTaskRandomFlip(flip_prob)``, ``MultiTaskRandomScaleRotate(
    rotation, scale)`` and ``MultiTaskResize(size)`` draw, in the same order, and composes the
    three into one affine map, so each map is resampled once instead of two or three times
    (about half the work; the image and normals are interpolated once, not twice). The result
    equals the three transforms' within interpolation error (tested). Nearest-neighbour maps
    keep ``cv2.resize``'s rounding (source pixel floor(x * w / W), not centre-aligned), so the
    labels sit where the three transforms, the validation resize and the reference put them.

    ``on_device=True`` only draws here and records the draw in the sample; the maps stay at
    their size on disk and ``MultiTaskDataPreprocessor`` resamples the whole batch on the
    model's device (``datasets/device_affine.py``), which takes the two cubic warps per image
    off the data loader workers.
    """

    def __init__(self, flip_prob: float = 0.5, rotation: Sequence[float] = (-20, 20),
                 scale: Sequence[float] = (0.75, 1.25),
                 size: Union[int, Sequence[int]] = (448, 448),
                 scale_choices: Optional[Sequence[float]] = None, on_device: bool = False):
        if not 0.0 <= flip_prob <= 1.0:
            raise ConfigError(f'flip_prob must be in [0, 1], got {flip_prob}', option='flip_prob')
        self.flip_prob = flip_prob
        self.rotation = _pair(rotation, 'rotation')
        self.scale = _pair(scale, 'scale')
        self.scale_choices = _choices(scale_choices)
        self.size = _size(size)
        self.on_device = bool(on_device)

    def transform(self, results: dict) -> dict:
        flip = np.random.rand() < self.flip_prob
        angle = np.random.uniform(*self.rotation)
        scale = _draw_scale(self.scale, self.scale_choices)
        if self.on_device:
            results['affine'] = (float(flip), float(angle), float(scale), *self.size)
            results['img_shape'] = self.size
            return results
        return affine(results, flip, angle, scale, self.size)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(flip_prob={self.flip_prob}, rotation={self.rotation}, '
                f'scale={self.scale}, scale_choices={self.scale_choices}, size={self.size}, '
                f'on_device={self.on_device})')


def affine_matrices(shape: Tuple[int, int], flip: bool, angle: float, scale: float,
                    size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Forward 2x3 maps (input pixel -> output pixel) of flip, then rotation and scale about
    the centre (``cv2.getRotationMatrix2D``), then resize from ``shape`` to ``size`` (both
    (height, width)): one for interpolated maps (centre-aligned like ``cv2.resize``'s cubic),
    one for nearest-neighbour maps (``cv2.resize``'s nearest takes source pixel floor(x w / W);
    ``warpAffine`` rounds, hence the half pixel)."""
    (h, w), (out_h, out_w) = shape, size
    flip_map = np.array([[-1, 0, w - 1], [0, 1, 0], [0, 0, 1]] if flip else np.eye(3), float)
    rotate = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale), [0, 0, 1]])
    fx, fy = out_w / w, out_h / h
    centred = np.array([[fx, 0, fx / 2 - 0.5], [0, fy, fy / 2 - 0.5], [0, 0, 1]])
    floored = np.array([[fx, 0, fx / 2], [0, fy, fy / 2], [0, 0, 1]])
    return (centred @ rotate @ flip_map)[:2], (floored @ rotate @ flip_map)[:2]


def affine(results: dict, flip: bool, angle: float, scale: float,
           size: Tuple[int, int]) -> dict:
    """The deterministic part of ``MultiTaskRandomAffine``, in place."""
    interpolated, nearest = affine_matrices(results['img'].shape[:2], flip, angle, scale, size)
    turn = cv2.getRotationMatrix2D((0, 0), angle, 1.0)[:, :2]
    if flip:
        turn = turn @ np.diag([-1.0, 1.0])  # the flip negates x before the rotation turns it
    out_h, out_w = size

    def warp(array, interpolation):
        matrix = nearest if interpolation == cv2.INTER_NEAREST else interpolated
        return cv2.warpAffine(array, matrix, (out_w, out_h), flags=interpolation,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    results['img'] = warp(results['img'], cv2.INTER_CUBIC)
    for task, target in results['gt'].items():
        kind, ignore = task_info(task)
        if kind == 'mask' and (target == ignore).all():
            results['gt'][task] = np.full(size, ignore, target.dtype)
            continue
        target = _resample(target, task, warp, turn)
        results['gt'][task] = target / np.float32(scale) if kind == 'depth' else target
    results['img_shape'] = tuple(size)
    return results


@TRANSFORMS.register_module()
class MultiTaskResize(BaseTransform):
    """Resize to ``size`` = (height, width) (an int means square), ignoring the aspect ratio."""

    def __init__(self, size: Union[int, Sequence[int]] = (448, 448)):
        self.size = _size(size)

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
    """Last transform: tensors for the model, without copying the maps.

    Returns ``{'inputs': uint8 (3, H, W) RGB, 'data_samples': {'gt': {task: tensor},
    'img_id', 'ori_shape', 'img_shape'}}`` with uint8 (H, W) masks, float32 (3, H, W) normals
    and float32 (1, H, W) depth, plus ``'affine'`` where ``MultiTaskRandomAffine(on_device=True)``
    left the resampling to the device. Image and normals are channel-first views of the arrays;
    masks stay uint8 and ``MultiTaskDataPreprocessor`` turns them into int64 on the device
    (an eighth of the bytes to pass between processes and to the GPU).
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
                gt[task] = torch.from_numpy(np.ascontiguousarray(target, dtype=np.uint8))
            elif kind == 'normals':
                gt[task] = torch.from_numpy(np.asarray(target, np.float32)).permute(2, 0, 1)
            else:
                gt[task] = torch.from_numpy(np.asarray(target, np.float32))[None]
        samples = dict(gt=gt, img_id=results['img_id'], ori_shape=tuple(results['ori_shape']),
                       img_shape=tuple(results['img_shape']))
        if 'affine' in results:  # MultiTaskRandomAffine(on_device=True): resampled later
            samples['affine'] = tuple(results['affine'])
        return dict(inputs=torch.from_numpy(img).permute(2, 0, 1), data_samples=samples)
