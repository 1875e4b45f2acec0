import math

import numpy as np
import pytest
import torch
from tolerance import assert_identity

from adapterkit.tasks import Depth, Normals


def test_normals_loss_by_hand_with_ignored_pixel():
    # Three pixels: (2,0,0) vs (0,1,0); (0,0,3) vs (0,0,1); an ignored one.
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 5.0]]).T.reshape(1, 3, 1, 3)
    target = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [255.0] * 3]).T.reshape(1, 3, 1, 3)
    # After normalising: |diff| = 1 + 1 + 0 and 0 over 6 valid elements.
    assert Normals().loss(logits, target).item() == pytest.approx(2 / 6)


def test_normals_loss_without_valid_pixel():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = Normals().loss(logits, torch.full((1, 3, 2, 2), 255.0))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_normals_decode_is_unit_vectors():
    pred = Normals().decode(torch.tensor([[[[3.0]], [[0.0]], [[4.0]]]]))
    assert pred.shape == (1, 3, 1, 1)
    assert pred.flatten().tolist() == pytest.approx([0.6, 0.0, 0.8])


def test_normals_unit_vectors_equal_torch_normalize_and_its_gradient():
    """In float64, to float64 rounding (tests/tolerance.py)."""
    logits = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    logits[0, :, 0, 0] = 0  # a zero vector stays zero, as in F.normalize
    logits.requires_grad_()
    weight = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    got = Normals().decode(logits)
    got_grad, = torch.autograd.grad((got * weight).sum(), logits)
    want = torch.nn.functional.normalize(logits, dim=1)
    want_grad, = torch.autograd.grad((want * weight).sum(), logits)
    assert_identity(got, want)
    assert_identity(got_grad, want_grad, 'gradient')
    assert torch.all(got[0, :, 0, 0] == 0)


def normal_image(pairs):
    """(pred, target) images of shape (3, 1, N) from a list of (pred, target) vectors."""
    pred = torch.tensor([p for p, _ in pairs], dtype=torch.float32).T.reshape(3, 1, -1)
    target = torch.tensor([t for _, t in pairs], dtype=torch.float32).T.reshape(3, 1, -1)
    return pred, target


def test_normals_metrics_on_known_angles():
    task = Normals()
    s, c = math.sin(math.radians(20)), math.cos(math.radians(20))
    first = normal_image([
        ([1, 0, 0], [1, 0, 0]),  # 0 degrees
        ([1, 0, 0], [0, 1, 0]),  # 90 degrees
        ([0, 0, 1], [255, 255, 255]),  # ignored
        ([0, 0, 1], [0, 0, 0]),  # zero-norm target: ignored
    ])
    second = normal_image([
        ([1, 0, 0], [0.5, 0.5, 0]),  # 45 degrees (target not unit: normalised)
        ([c, s, 0], [1, 0, 0]),  # 20 degrees
    ])
    stats = [task.process(*first), task.process(*second)]
    assert stats[0]['count'] == 2 and stats[0]['hist'].shape == (1800,)
    result = task.compute(stats)
    assert set(result) == set(task.metrics)
    # Errors 0, 20, 45, 90.
    assert result['mean'] == pytest.approx(155 / 4)
    assert result['rmse'] == pytest.approx(math.sqrt((400 + 2025 + 8100) / 4))
    assert result['median'] == pytest.approx(32.5, abs=0.05)  # (20 + 45) / 2 from 0.1-degree bins
    assert result['11.25'] == pytest.approx(25.0)
    assert result['22.5'] == pytest.approx(50.0)
    assert result['30'] == pytest.approx(50.0)


def test_normals_median_odd_count_and_opposite_vectors():
    task = Normals()
    pred, target = normal_image([([1, 0, 0], [1, 0, 0]), ([1, 0, 0], [-1, 0, 0]),
                                 ([0, 1, 0], [0, 0, 1])])
    result = task.compute([task.process(pred, target)])
    assert result['mean'] == pytest.approx(90.0)
    assert result['median'] == pytest.approx(90.0, abs=0.05)


def test_depth_loss_by_hand():
    logits = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.5, 0.0], [2.0, 4.0]]]])
    loss = Depth().loss(logits, target)
    assert loss.item() == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    loss.backward()
    empty = Depth().loss(logits, torch.zeros_like(target))
    assert empty.item() == 0.0
    empty.backward()


def test_depth_decode_drops_channel():
    assert Depth().decode(torch.ones(2, 1, 3, 4)).shape == (2, 3, 4)


def test_depth_rmse_over_all_valid_pixels_of_the_set():
    task = Depth()
    first = task.process(torch.tensor([[1.0, 2.0]]), torch.tensor([[[2.0, 0.0]]]))
    # A negative prediction is scored as ~0: error 1, not 2.
    second = task.process(torch.tensor([[3.0, -1.0]]), torch.tensor([[[1.0, 1.0]]]))
    result = task.compute([first, second])
    # Errors 1, 2, 1 over 3 valid pixels.
    assert result['rmse'] == pytest.approx(math.sqrt(6 / 3))
    assert result['abs_err'] == pytest.approx(4 / 3)
    assert task.metrics == {'rmse': False, 'log_rmse': False, 'abs_err': False,
                            'abs_rel': False, 'delta1': True}
    assert all(np.isnan(v) for v in task.compute([]).values())


def test_depth_relative_error_log_rmse_and_delta_by_hand():
    task = Depth()
    # (pred, gt): (1.1, 1.0) within 1.25; (2.0, 4.0) ratio 2; (3.0, 2.5) ratio 1.2; gt 0 ignored.
    stats = task.process(torch.tensor([[1.1, 2.0, 3.0, 7.0]]),
                         torch.tensor([[[1.0, 4.0, 2.5, 0.0]]]))
    result = task.compute([stats])
    assert result['abs_rel'] == pytest.approx((0.1 / 1.0 + 2.0 / 4.0 + 0.5 / 2.5) / 3)
    assert result['delta1'] == pytest.approx(200 / 3)
    logs = [math.log(1.1), math.log(0.5), math.log(1.2)]
    assert result['log_rmse'] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 3))
    assert result['rmse'] == pytest.approx(math.sqrt((0.01 + 4.0 + 0.25) / 3))
