"""Hooks adapterkit adds to mmengine's Runner."""
import os
import os.path as osp
import time

import cv2
import numpy as np
import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook

from ..fileio import write_json
from ..registry import HOOKS
from .bench import peak_memory, reset_peak_memory
from .compare_report import duration_text

STATS_KEY = 'adapterkit_train_stats'  # a run's training figures, in its checkpoints' meta

# 21 distinct colours (VOC palette) for class maps; class 255 (ignore) is drawn white.
_PALETTE = np.array([[(i >> 0 & 1) << 7 | (i >> 3 & 1) << 6 | (i >> 6 & 1) << 5,
                      (i >> 1 & 1) << 7 | (i >> 4 & 1) << 6 | (i >> 7 & 1) << 5,
                      (i >> 2 & 1) << 7 | (i >> 5 & 1) << 6 | (i >> 8 & 1) << 5]
                     for i in range(256)], dtype=np.uint8)
_PALETTE[255] = 255


def prediction_image(pred, label_kind: str, num_outputs: int) -> np.ndarray:
    """An RGB uint8 picture of one decoded prediction."""
    pred = pred.detach().float().cpu().numpy()
    if label_kind == 'normals':  # unit vectors -> the same encoding as the data set
        return np.clip((pred.transpose(1, 2, 0) + 1) * 127.5, 0, 255).astype(np.uint8)
    if label_kind == 'depth':
        depth = pred.squeeze()
        span = max(float(depth.max() - depth.min()), 1e-6)
        grey = ((depth - depth.min()) / span * 255).astype(np.uint8)
        return cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS)[..., ::-1]
    if num_outputs == 1:  # probabilities
        grey = np.clip(pred * 255, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return _PALETTE[pred.astype(np.int64).clip(0, 255)]


@HOOKS.register_module()
class SavePredictionsHook(Hook):
    """Write every test prediction as ``{out_dir}/{task}/{img_id}.png``."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        for i, sample in enumerate(outputs or []):
            img_id = sample.get('img_id') or f'{batch_idx:06d}_{i}'
            for name, pred in sample['pred'].items():
                task = model.tasks[name]
                folder = osp.join(self.out_dir, name)
                os.makedirs(folder, exist_ok=True)
                picture = prediction_image(pred, task.label_kind, task.num_outputs)
                cv2.imwrite(osp.join(folder, f'{img_id}.png'), picture[..., ::-1])


@HOOKS.register_module()
class SaveMetricsHook(Hook):
    """Write the latest validation/test metrics to ``{work_dir}/{filename}`` (rank 0 only),
    atomically, so a reader never sees a half-written file."""

    priority = 'LOW'

    def __init__(self, filename: str = 'metrics.json'):
        self.filename = filename

    def _dump(self, runner, metrics, split):
        if not metrics or not is_main_process():
            return
        path = osp.join(runner.work_dir, self.filename)
        record = dict(split=split, iter=runner.iter, epoch=runner.epoch,
                      metrics={k: float(v) for k, v in metrics.items()})
        write_json(path, record)

    def after_val_epoch(self, runner, metrics=None):
        self._dump(runner, metrics, 'val')

    def after_test_epoch(self, runner, metrics=None):
        self._dump(runner, metrics, 'test')


@HOOKS.register_module()
class RunMonitorHook(Hook):
    """Training wall time (validation excluded), images seen and peak memory of a run,
    carried in its checkpoints' meta (``STATS_KEY``) so that a resumed run adds up; and a
    progress line at every ``1 / lines`` of the run (``adapterkit compare`` adds it to every
    run it trains)."""

    def __init__(self, lines: int = 5):
        self.lines = lines
        self.stats = dict(time_s=0.0, images=0, iters=0, peak_memory_mb=0.0)
        self.device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
        self._start = None  # (time, iteration) at which this session started training
        self._last = None  # end of the previous iteration (or of a validation)

    def after_load_checkpoint(self, runner, checkpoint):
        self.stats.update(checkpoint.get('meta', {}).get(STATS_KEY) or {})

    def before_train(self, runner):
        reset_peak_memory(self.device)
        self._start = (time.perf_counter(), runner.iter)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._last is None:
            self._last = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        now = time.perf_counter()
        self.stats['time_s'] += now - self._last
        self._last = now
        self.stats['images'] += len(data_batch['inputs']) * get_world_size()
        self.stats['iters'] += 1
        step = max(1, runner.max_iters // self.lines)
        if runner.iter + 1 == runner.max_iters or (runner.iter + 1) % step == 0:
            start, first = self._start
            per_iter = (now - start) / (runner.iter + 1 - first)
            left = per_iter * (runner.max_iters - runner.iter - 1)
            loss = float(outputs['loss'].detach()) if 'loss' in (outputs or {}) else float('nan')
            print(f'    iter {runner.iter + 1}/{runner.max_iters}  loss {loss:.3f}  '
                  f'{per_iter:.2f} s/iter  eta {duration_text(left)}', flush=True)

    def after_val_epoch(self, runner, metrics=None):
        self._last = time.perf_counter()  # validation is not training time

    def before_save_checkpoint(self, runner, checkpoint):
        peak = peak_memory(self.device)[0] / 2**20
        self.stats['peak_memory_mb'] = round(max(self.stats['peak_memory_mb'], peak), 1)
        checkpoint.setdefault('meta', {})[STATS_KEY] = dict(self.stats)
