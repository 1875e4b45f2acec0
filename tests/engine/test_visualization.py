"""Panels drawn pixel by pixel as engine/visualization.py says, and the TensorBoard switch."""
import importlib.util

import numpy as np
import pytest
import torch

import adapterkit  # noqa: F401  (registers the tasks)
from adapterkit.engine.visualization import GAP, PALETTE, MultiTaskVisualizer, panel
from adapterkit.errors import ConfigError
from adapterkit.tasks.base import build_tasks

TASKS = build_tasks(['semseg', 'normals', 'sal'])
IMAGE = torch.full((3, 2, 2), 100, dtype=torch.uint8)


def tiles(picture):
    """The three tiles of a 2-pixel-wide panel: image, ground truth, prediction."""
    return picture[:, :2], picture[:, 2 + GAP:4 + GAP], picture[:, 4 + 2 * GAP:]


def test_a_class_map_is_overlaid_in_the_voc_palette_and_ignored_pixels_show_the_image():
    labels = torch.tensor([[0, 1], [15, 255]])
    image, truth, pred = tiles(panel(IMAGE, labels, labels, TASKS['semseg']))
    assert (image == 100).all() and (truth == pred).all()
    assert truth[0, 1].tolist() == [(100 + 128) // 2, 50, 50]  # class 1: (128, 0, 0), half
    assert truth[1, 0].tolist() == [(100 + int(c)) // 2 for c in PALETTE[15]]  # a person
    assert truth[1, 1].tolist() == [100, 100, 100]
    assert panel(IMAGE, labels, labels, TASKS['semseg'])[:, 2:2 + GAP].min() == 255  # the gap


def test_normals_are_drawn_as_rgb_and_saliency_as_grey():
    normals = torch.zeros(3, 2, 2)
    normals[:, 0, 0] = torch.tensor([1.0, -1.0, 0.0])
    _, truth, _ = tiles(panel(IMAGE, normals, normals, TASKS['normals']))
    assert truth[0, 0].tolist() == [255, 0, 127]  # (n + 1) * 127.5
    sal = torch.tensor([[0.0, 1.0], [0.5, 255.0]])
    _, truth, pred = tiles(panel(IMAGE, sal, torch.tensor([[0.0, 1.0], [0.5, 0.25]]),
                                 TASKS['sal']))
    assert truth[0].tolist() == [[0, 0, 0], [255, 255, 255]]
    assert truth[1, 1].tolist() == [255, 0, 0]  # ignored: red
    assert pred[1, 1].tolist() == [63, 63, 63]


def test_tensorboard_true_without_the_package_is_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'tensorboard' else real(name, *a))
    with pytest.raises(ConfigError, match=r"^visualizer.tensorboard=True needs the tensorboard "
                                          r"package: pip install 'adapterkit\[tensorboard\]'"):
        MultiTaskVisualizer(name='no_tb', tensorboard=True)
    quiet = MultiTaskVisualizer(name='auto_tb', tensorboard='auto')  # 'auto': off, no error
    assert quiet._vis_backends == {}
    with pytest.raises(ConfigError, match="must be True, False or 'auto'"):
        MultiTaskVisualizer(name='bad_tb', tensorboard='yes')


def test_tensorboard_true_adds_the_backend(tmp_path):
    pytest.importorskip('tensorboard')
    visualizer = MultiTaskVisualizer(name='tb', save_dir=str(tmp_path), tensorboard=True,
                                     vis_backends=[dict(type='LocalVisBackend')])
    assert sorted(visualizer._vis_backends) == ['LocalVisBackend', 'TensorboardVisBackend']
    assert np.asarray(PALETTE).shape == (256, 3)
