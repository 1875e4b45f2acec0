"""Hooks adapterkit adds to mmengine's Runner."""
import os
import os.path as osp
import time

import cv2
import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook

from ..fileio import write_json
from ..registry import HOOKS
from .bench import peak_memory, reset_peak_memory
from .compare_report import duration_text
from .visualization import panel

STATS_KEY = 'adapterkit_train_stats'  # a run's training figures, in its checkpoints' meta

def _panels(runner, data_batch, outputs, limit=None):
    """``(img_id, task, panel)`` for the first ``limit`` images of a batch (all with None):
    image | ground truth | prediction (engine/visualization.py)."""
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    images = (data_batch or {}).get('inputs') or [None] * len(outputs or [])
    for i, (sample, image) in enumerate(zip((outputs or [])[:limit], images)):
        img_id = sample.get('img_id') or f'{runner.iter:06d}_{i}'
        for name, pred in sample['pred'].items():
            if image is None:
                image = torch.zeros((3, *pred.shape[-2:]), dtype=torch.uint8)
            yield img_id, name, panel(image, sample.get('gt', {}).get(name), pred,
                                      model.tasks[name])


@HOOKS.register_module()
class SavePredictionsHook(Hook):
    """Write every test image's panel per task (image | ground truth | prediction, see
    engine/visualization.py) as ``{out_dir}/{task}/{img_id}.png``."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for img_id, task, picture in _panels(runner, data_batch, outputs):
            folder = osp.join(self.out_dir, task)
            os.makedirs(folder, exist_ok=True)
            cv2.imwrite(osp.join(folder, f'{img_id}.png'), picture[..., ::-1])


@HOOKS.register_module()
class LogPredictionsHook(Hook):
    """Hand the panels of the first ``num_images`` validation images of every validation
    to the visualizer, as ``val_<task>_<img_id>`` at the current iteration: TensorBoard
    shows them as images (``MultiTaskVisualizer(tensorboard=...)``), the local backend
    writes them under ``vis_data/vis_image/``."""

    def __init__(self, num_images: int = 2):
        self.num_images = num_images
        self._left = 0

    def before_val_epoch(self, runner):
        self._left = self.num_images

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._left <= 0 or not is_main_process():
            return
        shown = set()
        for img_id, task, picture in _panels(runner, data_batch, outputs, self._left):
            runner.visualizer.add_image(f'val_{task}_{img_id}', picture, step=runner.iter)
            shown.add(img_id)
        self._left -= len(shown)


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
        if split == 'test':
            # runner.iter would build the train loop, and with it the TRAIN data set: a test
            # run must not need it. Training progress, if any, is in the message hub.
            progress = [runner.message_hub.get_info(key) for key in ('iter', 'epoch')]
        else:
            progress = [runner.iter, runner.epoch]
        record = dict(split=split, iter=progress[0], epoch=progress[1],
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
