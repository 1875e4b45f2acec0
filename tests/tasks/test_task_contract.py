"""The task contract, checked for every task in ``TASKS`` (adapterkit's and the plugins'),
on a tiny batch: its target goes through the real transforms and data preprocessor in the
layout its loss takes, its loss learns, its decoding answers per-pixel predictions, and each
metric moves the way its declared direction says when the prediction gets better.

What only one task does (its formulas by hand) stays in that task's own test file.
"""
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate

from adapterkit.datasets.transforms import MultiTaskResize, PackMultiTaskInputs
from adapterkit.models.data_preprocessor import MultiTaskDataPreprocessor
from adapterkit.plugins import load_plugins
from adapterkit.registry import TASKS

load_plugins()  # their tasks join the walk
TASKS.import_from_location()
NAMES = sorted(TASKS.module_dict)
SIZE, BATCH = 12, 2

#: The batched target each label kind arrives as (see ``Task``): (dtype, channel dim or None).
LAYOUTS = {'mask': (torch.int64, None), 'normals': (torch.float32, 3),
           'depth': (torch.float32, 1)}


def raw_target(task, rng: np.random.Generator) -> np.ndarray:
    """A target as a loader hands it (H x W, or H x W x 3 for normals), a third ignored."""
    shape = (SIZE + 4, SIZE + 4)
    if task.label_kind == 'normals':
        target = rng.normal(size=(*shape, 3)).astype(np.float32)
        target /= np.linalg.norm(target, axis=2, keepdims=True)
        target[: shape[0] // 3] = task.ignore_index
    elif task.label_kind == 'depth':
        target = rng.uniform(0.5, 5.0, size=shape).astype(np.float32)
        target[: shape[0] // 3] = 0  # no depth measured
    else:
        target = rng.integers(0, max(task.num_outputs, 2), size=shape).astype(np.uint8)
        target[: shape[0] // 3] = task.ignore_index
    return target


def batch(task, rng) -> torch.Tensor:
    """The target of ``BATCH`` samples after resizing, packing and the data preprocessor."""
    resize, pack = MultiTaskResize(SIZE), PackMultiTaskInputs()
    samples = []
    for i in range(BATCH):
        image = rng.integers(0, 256, size=(SIZE + 4, SIZE + 4, 3), dtype=np.uint8)
        sample = dict(img=image, gt={task.name: raw_target(task, rng)}, img_id=str(i),
                      ori_shape=image.shape[:2], img_shape=image.shape[:2])
        samples.append(pack(resize(sample)))
    data = MultiTaskDataPreprocessor()(pseudo_collate(samples))
    return data['data_samples']['gt'][task.name]


def scores(task, logits: torch.Tensor, target: torch.Tensor) -> dict:
    pred = task.decode(logits.detach())
    return task.compute([task.process(pred[i], target[i]) for i in range(BATCH)])


@pytest.fixture(params=NAMES)
def task(request):
    return TASKS.build(dict(type=request.param))


def test_a_task_declares_what_the_pipeline_and_the_metrics_need(task):
    assert task.name in TASKS.module_dict and task.num_outputs >= 1
    assert task.label_kind in LAYOUTS
    assert task.metrics and task.primary_metric in task.metrics
    assert all(isinstance(higher, bool) for higher in task.metrics.values())


def test_its_target_arrives_in_the_layout_its_loss_takes(task):
    target = batch(task, np.random.default_rng(0))
    dtype, channels = LAYOUTS[task.label_kind]
    shape = (BATCH, SIZE, SIZE) if channels is None else (BATCH, channels, SIZE, SIZE)
    assert (target.dtype, tuple(target.shape)) == (dtype, shape)
    ignored = target[..., : SIZE // 4, :]  # the ignored top third survives the resize
    empty = 0 if task.label_kind == 'depth' else task.ignore_index
    assert bool((ignored == empty).all())
    if task.label_kind == 'mask':
        valid = target[target != task.ignore_index]
        assert int(valid.min()) >= 0 and int(valid.max()) < max(task.num_outputs, 2)


def test_its_loss_learns_and_its_metrics_improve_in_their_declared_direction(task):
    target = batch(task, np.random.default_rng(1))
    torch.manual_seed(0)
    logits = torch.randn(BATCH, task.num_outputs, SIZE, SIZE, requires_grad=True)
    before = scores(task, logits, target)
    first = task.loss(logits, target)
    assert first.dim() == 0 and torch.isfinite(first)
    optimizer = torch.optim.Adam([logits], lr=0.2)
    for _ in range(100):
        optimizer.zero_grad()
        task.loss(logits, target).backward()
        optimizer.step()
    assert task.loss(logits, target) < 0.5 * first
    pred = task.decode(logits.detach())
    assert pred.shape[0] == BATCH and pred.shape[-2:] == (SIZE, SIZE)
    after = scores(task, logits, target)
    assert set(before) == set(after) == set(task.metrics)
    worse = {metric: (before[metric], after[metric]) for metric, higher in task.metrics.items()
             if not (after[metric] > before[metric] if higher else after[metric] < before[metric])}
    assert worse == {}, f'{task.name}: (random, learnt) {worse}'
