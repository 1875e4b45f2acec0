"""Pictures a person can read: per-task panels (image | ground truth | prediction) and the
visualizer that sends them, with every scalar, to TensorBoard.

Panels. One RGB picture per image and task, three tiles side by side with a white gap: the
input image, the ground truth and the prediction, each drawn the same way:

- class maps (semseg, human_parts): the VOC palette laid over the image at half opacity;
  ignored pixels (255) show the bare image;
- normals: the unit vectors as RGB, ``(n + 1) / 2`` (the data set's own encoding);
- one-channel maps (saliency, edges): grey, 0 black to 1 white; ignored pixels red;
- depth: the viridis colour map over the prediction's range (ground truth on the same
  scale), ignored pixels (0 or the ignore value) black.

Visualizer. ``MultiTaskVisualizer`` is mmengine's ``Visualizer`` with one more option,
``tensorboard``: ``True`` adds mmengine's ``TensorboardVisBackend`` (losses, learning
rate, every metric and Δm as scalars; ``LogPredictionsHook``'s panels as images) and is an
error naming the missing package where ``tensorboard`` is not installed; ``'auto'`` adds it
where installed (the paper-size configs), ``False`` never (the default).
"""
import importlib.util
from typing import Optional, Union

import cv2
import numpy as np
import torch
from mmengine.visualization import Visualizer

from ..errors import ConfigError
from ..registry import VISUALIZERS

# VOC palette for class maps (class i: bits of i spread over R, G, B from the top bit down)
PALETTE = np.array([[(i >> 0 & 1) << 7 | (i >> 3 & 1) << 6 | (i >> 6 & 1) << 5,
                     (i >> 1 & 1) << 7 | (i >> 4 & 1) << 6 | (i >> 7 & 1) << 5,
                     (i >> 2 & 1) << 7 | (i >> 5 & 1) << 6 | (i >> 8 & 1) << 5]
                    for i in range(256)], dtype=np.uint8)
GAP = 4  # white pixels between tiles
IGNORED_GREY = (255, 0, 0)  # an ignored pixel of a one-channel map


def _numpy(value) -> np.ndarray:
    return value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) \
        else np.asarray(value, dtype=np.float32)


def picture(value, task, image: np.ndarray, span: Optional[tuple] = None) -> np.ndarray:
    """An RGB uint8 (H, W, 3) picture of one target or decoded prediction of ``task``
    (drawn as the module docstring says); ``span`` fixes a depth map's colour scale."""
    value = _numpy(value)
    if task.label_kind == 'normals':
        valid = (value != task.ignore_index).all(0)
        rgb = np.clip((value.transpose(1, 2, 0) + 1) * 127.5, 0, 255).astype(np.uint8)
        return np.where(valid[..., None], rgb, 0).astype(np.uint8)
    value = value.reshape(value.shape[-2:])
    if task.label_kind == 'depth':
        valid = np.isfinite(value) & (value > 0) & (value != task.ignore_index)
        low, high = span or depth_span(value)
        grey = np.clip((value - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
        colour = cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS)[..., ::-1]
        return np.where(valid[..., None], colour, 0).astype(np.uint8)
    ignored = value == task.ignore_index
    if task.num_outputs == 1:  # probabilities or 0/1 labels
        grey = np.clip(value * 255, 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        return np.where(ignored[..., None], np.array(IGNORED_GREY, np.uint8), rgb)
    colour = PALETTE[value.astype(np.int64).clip(0, 255)]
    blend = (image.astype(np.float32) + colour) / 2
    return np.where(ignored[..., None], image, blend).astype(np.uint8)


def depth_span(value: np.ndarray) -> tuple:
    valid = value[np.isfinite(value) & (value > 0)]
    return (float(valid.min()), float(valid.max())) if valid.size else (0.0, 1.0)


def panel(image, target, prediction, task) -> np.ndarray:
    """Image | ground truth | prediction of one task, side by side (RGB uint8). The
    image is (3, H, W) or (H, W, 3) RGB; a missing target leaves its tile white."""
    image = _numpy(image).astype(np.uint8)
    if image.shape[0] == 3 and image.shape[-1] != 3:
        image = image.transpose(1, 2, 0)
    height, width = prediction.shape[-2:]
    if image.shape[:2] != (height, width):  # an image resized later, on the device
        image = cv2.resize(np.ascontiguousarray(image), (width, height),
                           interpolation=cv2.INTER_AREA)
    span = depth_span(_numpy(prediction)) if task.label_kind == 'depth' else None
    tiles = [image, picture(prediction, task, image, span)]
    truth = np.full_like(image, 255) if target is None else picture(target, task, image, span)
    tiles.insert(1, truth)
    height = max(t.shape[0] for t in tiles)
    gap = np.full((height, GAP, 3), 255, np.uint8)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0)), constant_values=255)
              for t in tiles]
    return np.concatenate([padded[0], gap, padded[1], gap, padded[2]], axis=1)


@VISUALIZERS.register_module()
class MultiTaskVisualizer(Visualizer):
    """mmengine's ``Visualizer`` plus ``tensorboard`` (True, ``'auto'`` or False; see the
    module docstring): one config line, ``visualizer = dict(tensorboard=True)``."""

    def __init__(self, name: str = 'visualizer', vis_backends=None, save_dir=None,
                 tensorboard: Union[bool, str] = False, **kwargs):
        backends = [dict(b) for b in vis_backends or []]
        if tensorboard not in (True, False, 'auto'):
            raise ConfigError(f"visualizer.tensorboard must be True, False or 'auto', got "
                              f'{tensorboard!r}', key='visualizer.tensorboard')
        installed = importlib.util.find_spec('tensorboard') is not None
        if tensorboard is True and not installed:
            raise ConfigError("visualizer.tensorboard=True needs the tensorboard package: pip "
                              "install 'adapterkit[tensorboard]' (or set "
                              'visualizer.tensorboard=False)', key='visualizer.tensorboard')
        if tensorboard and installed and \
                not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
            backends.append(dict(type='TensorboardVisBackend'))
        super().__init__(name=name, vis_backends=backends or None, save_dir=save_dir,
                         **kwargs)
