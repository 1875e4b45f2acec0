"""The device half of ``MultiTaskRandomAffine(on_device=True)``: one batched resampling.

With ``on_device=True`` the transform only draws (flip, angle, scale) in the data loader
worker and leaves every map at its size on disk; ``MultiTaskDataPreprocessor`` then calls
``affine_batch`` on the device, for the whole batch at once, with the same composed maps as
the OpenCV path (``transforms.affine_matrices``). The CPU keeps decoding files, nothing else:
the two cubic warps per image (image and normals) were about half of a worker's time.

``torch.nn.functional.grid_sample`` does the resampling: bicubic with the same kernel as
OpenCV (Keys, a = -0.75) for the image and normals, nearest for label maps, zeros outside the
picture (OpenCV's border 0). Images of different sizes are padded with zeros to the largest of
the batch, which changes nothing: outside its own pixels a sample reads 0 either way. Two
differences from OpenCV remain, both within interpolation error (tested): OpenCV rounds source
positions to 1/32 pixel and the image to uint8 after each warp, and grid_sample's nearest
rounds half to even where OpenCV rounds half up (the nearest maps are nudged by 1/1024 pixel
so that OpenCV's floor rule survives on exact ties, as at scale 1).
"""
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .transforms import affine_matrices, task_info

_TIE_NUDGE = 1 / 1024  # pixels; OpenCV's fixed-point resolution of warp coordinates


def affine_batch(images: Sequence[torch.Tensor], gt: Dict[str, Sequence[torch.Tensor]],
                 params: Sequence[Tuple]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Resample a batch as ``transforms.affine`` resamples each sample.

    Args:
        images: per sample, a uint8 (3, h, w) tensor on the device.
        gt: per task, the samples' targets on the device, as ``PackMultiTaskInputs`` packs them.
        params: per sample, (flip, angle, scale, out_height, out_width) as drawn by the
            transform.

    Returns the images as float32 (B, 3, H, W) holding rounded values in 0..255 (what the
    uint8 image of the OpenCV path holds) and every task's targets batched at (H, W).
    """
    size = {(int(p[3]), int(p[4])) for p in params}
    if len(size) != 1:
        raise ConfigError(f'MultiTaskRandomAffine(on_device=True): one output size per batch, '
                          f'got {sorted(size)}', option='size')
    out_h, out_w = size.pop()
    shapes = [tuple(img.shape[-2:]) for img in images]
    pad_h, pad_w = max(s[0] for s in shapes), max(s[1] for s in shapes)
    device = images[0].device
    thetas = [_thetas(s, p, (pad_h, pad_w)) for s, p in zip(shapes, params)]
    grids = {}
    for i, mode in enumerate(('bicubic', 'nearest')):
        theta = torch.tensor(np.stack([t[i] for t in thetas]), dtype=torch.float32,
                             device=device)
        grids[mode] = F.affine_grid(theta, (len(images), 1, out_h, out_w), align_corners=False)
    img = _sample(_pad(images, pad_h, pad_w).float(), grids['bicubic'], 'bicubic')
    out = {}
    for task, maps in gt.items():
        kind, ignore = task_info(task)
        batch = _pad(maps, pad_h, pad_w)
        if kind == 'normals':
            out[task] = _normals(batch.float(), grids, params, ignore)
        elif kind == 'depth':
            scales = torch.tensor([float(p[2]) for p in params], device=device)
            out[task] = _sample(batch.float(), grids['nearest'], 'nearest') / scales.view(
                -1, 1, 1, 1)
        else:
            areas = torch.tensor([s[0] * s[1] for s in shapes], device=device)
            out[task] = _mask(batch, grids['nearest'], ignore, areas)
    return img.clamp_(0, 255).round_(), out


def _thetas(shape, param, padded) -> Tuple[np.ndarray, np.ndarray]:
    """grid_sample's (2, 3) maps, output -> input in normalised coordinates, of a sample."""
    flip, angle, scale, out_h, out_w = param
    matrices = affine_matrices(shape, bool(flip), float(angle), float(scale),
                               (int(out_h), int(out_w)))
    to_pixels = _normalised(int(out_h), int(out_w), inverse=True)
    to_input = _normalised(*padded)
    thetas = []
    for matrix, nudge in zip(matrices, (0.0, _TIE_NUDGE)):
        inverse = np.vstack([_invert(matrix), [0, 0, 1]])
        inverse[:2, 2] += nudge
        thetas.append((to_input @ inverse @ to_pixels)[:2])
    return thetas[0], thetas[1]


def _invert(matrix: np.ndarray) -> np.ndarray:
    square = np.vstack([matrix, [0, 0, 1]])
    return np.linalg.inv(square)[:2]


def _normalised(height: int, width: int, inverse: bool = False) -> np.ndarray:
    """Pixel (centre) coordinates -> grid_sample's [-1, 1] (align_corners=False), or back."""
    forward = np.array([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1],
                        [0, 0, 1]])
    return np.linalg.inv(forward) if inverse else forward


def _pad(maps: Sequence[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """(B, C, height, width): each map (C, h, w) or (h, w) at the top left, zeros elsewhere."""
    first = maps[0] if maps[0].dim() == 3 else maps[0][None]
    batch = first.new_zeros((len(maps), first.shape[0], height, width))
    for out, m in zip(batch, maps):
        m = m if m.dim() == 3 else m[None]
        out[:, :m.shape[-2], :m.shape[-1]] = m
    return batch


def _sample(batch: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    return F.grid_sample(batch, grid, mode=mode, padding_mode='zeros', align_corners=False)


def _mask(batch: torch.Tensor, grid: torch.Tensor, ignore: int,
          areas: torch.Tensor) -> torch.Tensor:
    """Nearest label maps; a map that is all ignored (no annotation) stays all ignored."""
    out = _sample(batch.float(), grid, 'nearest')[:, 0].to(batch.dtype)
    unannotated = (batch == ignore).flatten(1).sum(1) == areas  # padding is 0, not ignored
    return torch.where(unannotated.view(-1, 1, 1), torch.full_like(out, ignore), out)


def _normals(batch: torch.Tensor, grids: dict, params: Sequence[Tuple],
             ignore: int) -> torch.Tensor:
    """Cubic on the valid vectors, validity by nearest, turned in-plane, renormalised."""
    valid = batch[:, :1] != ignore
    vectors = _sample(torch.where(valid, batch, 0.0), grids['bicubic'], 'bicubic')
    valid = _sample(valid.float(), grids['nearest'], 'nearest') > 0.5
    turns = torch.stack([_turn(p) for p in params]).to(batch)  # (B, 2, 2)
    in_plane = torch.einsum('bij,bjhw->bihw', turns, vectors[:, :2])
    vectors = torch.cat([in_plane, vectors[:, 2:]], 1)
    norm = vectors.pow(2).sum(1, keepdim=True).sqrt()
    keep = valid & (norm > 1e-6)
    return torch.where(keep, vectors / norm.clamp_min(1e-6), torch.full_like(vectors, ignore))


def _turn(param) -> torch.Tensor:
    """The 2x2 map of the in-plane normal components (flip, then the rotation)."""
    flip, angle = bool(param[0]), np.radians(float(param[1]))
    turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    if flip:
        turn = turn @ np.diag([-1.0, 1.0])
    return torch.as_tensor(turn, dtype=torch.float32)

