"""Hooks adapterkit adds to mmengine's Runner."""
import math
import os
import os.path as osp
import re
import time
from typing import Optional

import cv2
import torch
from mmengine.dist import (all_reduce, broadcast_object_list, get_comm_device, get_world_size,
                           is_main_process)
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from ..errors import DivergedError
from ..fileio import atomic_path, read_json, write_bytes, write_json, write_text
from ..registry import HOOKS
from .bench import peak_memory, reset_peak_memory
from .compare_report import duration_text
from .visualization import panel
from .workdir import remove_temporaries

STATS_KEY = 'adapterkit_train_stats'  # a run's training figures, in its checkpoints' meta
FSDP_PREFIX = '_fsdp_wrapped_module.'  # what FSDP's units add to the names of parameters


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
            # encoded here and written by fileio: cv2.imwrite ignores a failed write
            png = cv2.imencode('.png', picture[..., ::-1])[1].tobytes()
            write_bytes(osp.join(folder, f'{img_id}.png'), png)


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
    atomically, so a reader never sees a half-written file.

    The record says which training iteration (and epoch) the weights come from: the one
    training has reached, or the loaded checkpoint's. It is followed here rather than read
    from ``runner.iter`` after the fact: asking a Runner that only tests for its iteration
    builds its train loop, and with it the train data set. A metric that is not a number
    (a task with no valid pixel) is written as null, never as JSON-invalid ``NaN``.

    A run killed during its final validation resumes at its last iteration, where mmengine's
    loop trains and validates nothing: at the end of training, a final validation that
    mmengine's loop would have run but that this file does not hold is run then.
    """

    priority = 'LOW'

    def __init__(self, filename: str = 'metrics.json'):
        self.filename = filename
        self.step = dict(iter=None, epoch=None)  # what the evaluated weights were trained to

    def after_load_checkpoint(self, runner, checkpoint):
        meta = checkpoint.get('meta') or {}
        self.step = dict(iter=meta.get('iter'), epoch=meta.get('epoch'))

    def before_train(self, runner):
        self.step = dict(iter=runner.iter, epoch=runner.epoch)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.step['iter'] = runner.iter + 1

    def after_train_epoch(self, runner):
        self.step['epoch'] = runner.epoch + 1

    def after_train(self, runner):
        loop = runner.train_loop
        unit = 'epoch' if isinstance(loop, EpochBasedTrainLoop) else 'iter'
        reached = getattr(runner, unit)
        missing = [False]
        if is_main_process():
            record = read_json(osp.join(runner.work_dir, self.filename)) or {}
            missing[0] = (reached >= loop.val_begin and reached == getattr(loop, f'max_{unit}s')
                          and (record.get('split'), record.get(unit)) != ('val', reached))
        broadcast_object_list(missing)  # every rank validates, or none
        if missing[0] and runner.val_loop is not None:
            runner.val_loop.run()

    def _dump(self, runner, metrics, split):
        if not metrics or not is_main_process():
            return
        path = osp.join(runner.work_dir, self.filename)
        write_json(path, dict(split=split, **self.step,
                              metrics={k: json_number(v) for k, v in metrics.items()}))

    def after_val_epoch(self, runner, metrics=None):
        self._dump(runner, metrics, 'val')

    def after_test_epoch(self, runner, metrics=None):
        self._dump(runner, metrics, 'test')


def json_number(value) -> Optional[float]:
    """``value`` as a float for JSON: None (null) where it is not finite."""
    value = float(value)
    return value if math.isfinite(value) else None


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


def _unwrapped(model):
    return model.module if is_model_wrapper(model) else model


def _first_non_finite(model) -> Optional[str]:
    """The name of the model's first parameter or buffer that holds a nan or inf (this
    rank's shard of it under FSDP), or None."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name.replace(FSDP_PREFIX, '')
    return None


def _on_any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank: every rank must take the same branch, or the
    ones that go on wait forever on the ones that stopped."""
    if get_world_size() == 1:
        return flag
    found = torch.tensor([float(flag)], device=get_comm_device())
    all_reduce(found, op='sum')
    return bool(found.item())


def diverged_fix(optim_wrapper) -> str:
    """What to change when training diverged: the learning rate, and gradient clipping where
    it is off."""
    clips = getattr(optim_wrapper, 'clip_grad_kwargs', None) or any(
        getattr(w, 'clip_grad_kwargs', None)
        for w in getattr(optim_wrapper, 'optim_wrappers', {}).values())
    return ('lower the learning rate (optim_wrapper.optimizer.lr)' + (
        '' if clips else ' or clip gradients (optim_wrapper.clip_grad=dict(max_norm=1.0))'))


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop training at the first iteration whose loss or gradient norm is nan or inf, with
    one line naming the iteration and the task losses.

    The gradient norm is the one the optimizer wrapper clips with (``clip_grad``): a huge
    but finite loss can give a nan norm, and clipping by it turns every weight to nan in
    that very step. Under fp16 loss scaling an inf norm is expected now and then (the step
    is skipped and the scale lowered), so there only the loss counts. This hook runs before
    the checkpoint hook, so the weights of the failing step are never saved: the last
    checkpoint stays the last good one, to resume from with a lower learning rate. Under
    several processes every rank stops together (one all-reduce of a flag per iteration).
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        losses = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                  for k, v in (outputs or {}).items() if k.startswith('loss')}
        problem = self._problem(runner, losses)
        if _on_any_rank(problem is not None):
            raise DivergedError(f'{problem or "the loss is not finite on another rank"} at '
                                f'iteration {runner.iter + 1}: training stopped, nothing of '
                                f'this iteration was saved; {diverged_fix(runner.optim_wrapper)}')

    @staticmethod
    def _problem(runner, losses) -> Optional[str]:
        tasks = {k: v for k, v in losses.items() if k != 'loss'}
        bad = [f'{k} is {v}' for k, v in (tasks or losses).items() if not math.isfinite(v)]
        if bad or not math.isfinite(losses.get('loss', 0.0)):
            return ', '.join(bad) or f'loss is {losses["loss"]}'
        norm = runner.message_hub.log_scalars.get('train/grad_norm')
        if norm is None or math.isfinite(norm.current()) or _scales_loss(runner.optim_wrapper):
            return None
        largest = max(tasks.items(), key=lambda kv: kv[1], default=None)
        return (f'the gradient norm is {norm.current()}' +
                (f' (largest task loss {largest[0]} = {largest[1]:.3g})' if largest else ''))


def _scales_loss(optim_wrapper) -> bool:
    """Whether the optimizer wrapper (any of them) scales the loss for fp16."""
    wrappers = getattr(optim_wrapper, 'optim_wrappers', {'': optim_wrapper})
    return any(hasattr(w, 'loss_scaler') for w in wrappers.values())


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook, with every option of it, made safe against kills and
    divergence (``configs/_base_/default_runtime.py`` makes it ``default_hooks.checkpoint``):

    - A checkpoint is written to a temporary file beside its name and renamed over it
      (``fileio.atomic_path``), and ``last_checkpoint`` likewise: a kill leaves the previous
      checkpoint or the new one whole, never a half-written one under a checkpoint's name.
    - Checkpoints beyond ``max_keep_ckpts``, and a best checkpoint that a better one
      replaces, are deleted only once the new checkpoint and ``last_checkpoint`` are
      complete (mmengine deletes first). A kill in between leaves one checkpoint too many,
      which the resumed run deletes, together with the temporaries of interrupted writes.
    - Weights that are not finite are never saved: ``DivergedError`` names the tensor and
      the kept checkpoints stay.

    Checkpoints that are folders (DeepSpeed, FSDP with a sharded state dict) or go to a
    remote backend are written by mmengine itself, still deleting old ones afterwards.
    """

    local = False  # whether checkpoints go to a local folder (known once training starts)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self.local = isinstance(self.file_backend, LocalBackend)
        if not (is_main_process() and self.local and '{}' in self.filename_tmpl):
            return
        numbered = re.escape(self.filename_tmpl).replace(r'\{\}', r'(\d+)')
        remove_temporaries(self.out_dir, f'{numbered}|best_.*|last_checkpoint')
        kept = getattr(self, 'keep_ckpt_ids', None)
        # the deletions a kill stopped (between saving the new checkpoint and deleting)
        for name in os.listdir(self.out_dir) if kept and osp.isdir(self.out_dir) else ():
            match = re.fullmatch(numbered, name)
            if match and int(match.group(1)) < kept[0]:
                self._remove(osp.join(self.out_dir, name))

    def _save_checkpoint_with_step(self, runner, step, meta):
        runner = getattr(runner, 'adapterkit_runner', runner)
        filename = self.filename_tmpl.format(step)
        self._refuse_non_finite(runner, filename)
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._write(runner, self.out_dir, filename, save_optimizer=self.save_optimizer,
                    save_param_scheduler=self.save_param_scheduler, meta=meta,
                    by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old in stale:
            self._remove(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old)))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        # mmengine's own logic, on a view of the runner that saves atomically and of the
        # backend that deletes the replaced best checkpoint only after the new one is saved.
        backend, replaced = self.file_backend, []
        self.file_backend = _DeferredRemoval(backend, replaced)
        try:
            super()._save_best_checkpoint(_AtomicSaving(runner, self), metrics)
        finally:
            self.file_backend = backend
        for path in replaced:
            self._remove(path)

    def _write(self, runner, out_dir, filename, **kwargs):
        """``runner.save_checkpoint`` to a temporary file renamed onto ``filename`` (rank 0;
        the other ranks take part in gathering the state and write nothing)."""
        args = kwargs.pop('file_client_args', self.file_client_args)
        if not (self.local and _writes_one_file(runner) and is_main_process()):
            runner.save_checkpoint(out_dir, filename, args, **kwargs)
            return
        with atomic_path(osp.join(out_dir, filename)) as tmp:
            runner.save_checkpoint(osp.dirname(tmp), osp.basename(tmp), args, **kwargs)

    def _refuse_non_finite(self, runner, filename):
        bad = _first_non_finite(_unwrapped(runner.model))
        if _on_any_rank(bad is not None):
            what = f'weight {bad}' if bad else 'a weight on another rank'
            kept = f'; {self.last_ckpt} is kept' if self.last_ckpt else ''
            raise DivergedError(f'refusing to save {filename}: {what} is not finite{kept}. '
                                f'Training diverged: {diverged_fix(runner.optim_wrapper)}')

    def _remove(self, path):
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # DeepSpeed's checkpoints are folders
            self.file_backend.rmtree(path)


def _writes_one_file(runner) -> bool:
    """Whether rank 0 writes the whole checkpoint as one file: always with the Runner; with
    the FlexibleRunner unless its strategy writes a folder (DeepSpeed, sharded FSDP)."""
    strategy = getattr(runner, 'strategy', None)
    if strategy is None or type(strategy).__name__ == 'DeepSpeedStrategy':
        return strategy is None
    full_state = getattr(strategy, '_is_full_state_dict', None)
    return full_state is None or full_state()


class _AtomicSaving:
    """The runner as mmengine's best-checkpoint code sees it: saving goes through
    ``SafeCheckpointHook._write``, everything else to the runner."""

    def __init__(self, runner, hook):
        self.adapterkit_runner, self._hook = runner, hook

    def __getattr__(self, name):
        return getattr(self.adapterkit_runner, name)

    def save_checkpoint(self, out_dir, filename, file_client_args=None, **kwargs):
        self._hook._write(self.adapterkit_runner, out_dir, filename,
                          file_client_args=file_client_args, **kwargs)


class _DeferredRemoval:
    """A file backend whose ``remove``/``rmtree`` only note the path (done later)."""

    def __init__(self, backend, removed: list):
        self._backend, self._removed = backend, removed

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def remove(self, path):
        self._removed.append(path)

    rmtree = remove
