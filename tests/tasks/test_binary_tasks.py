import math

import numpy as np
import pytest
import torch
from tolerance import FEW_OPERATIONS

from adapterkit.tasks import Edge, Saliency
from adapterkit.tasks.base import balanced_bce_with_logits

L = math.log(4 / 3)  # BCE of logit ln 3 for label 1, and of -ln 3 for label 0


def four_elements():
    logits = torch.tensor([[[[math.log(3), -math.log(3)], [-math.log(3), 7.0]]]])
    target = torch.tensor([[[1, 0], [0, 255]]])
    return logits, target


def test_balanced_bce_by_hand():
    logits, target = four_elements()
    # 3 valid: 1 positive, 2 negatives -> w = 2/3; divided by all 4 elements.
    expected = (2 / 3 * L + 1 / 3 * 2 * L) / 4
    loss = balanced_bce_with_logits(logits, target).item()
    assert loss == pytest.approx(expected, rel=FEW_OPERATIONS)
    assert Saliency().loss(logits, target).item() == pytest.approx(expected, rel=FEW_OPERATIONS)


def test_edge_loss_uses_fixed_weight():
    logits, target = four_elements()
    expected = (0.95 * L + 0.05 * 2 * L) / 4
    assert Edge().loss(logits, target).item() == pytest.approx(expected, rel=FEW_OPERATIONS)


def test_balanced_bce_is_stable_for_large_logits():
    logits = torch.tensor([[[[200.0, -200.0]]]], requires_grad=True)
    right = balanced_bce_with_logits(logits, torch.tensor([[[1, 0]]]))
    wrong = balanced_bce_with_logits(logits, torch.tensor([[[0, 1]]]))
    # exactly e^-200 / 2, below float32's range: rounding of terms of size 200 at most
    assert right.item() == pytest.approx(0.0, abs=200 * FEW_OPERATIONS)
    # w = 1/2, both elements cost 200, divided by 2 elements.
    assert wrong.item() == pytest.approx(100.0)
    wrong.backward()
    assert torch.isfinite(logits.grad).all()


def test_balanced_bce_all_ignored_is_zero_and_connected():
    logits = torch.randn(1, 1, 2, 2, requires_grad=True)
    target = torch.full((1, 2, 2), 255)
    for task in (Saliency(), Edge()):
        loss = task.loss(logits, target)
        assert loss.item() == 0.0
        loss.backward()


def test_decode_is_sigmoid_without_channel():
    logits = torch.tensor([[[[0.0, math.log(3)]]]])
    for task in (Saliency(), Edge()):
        prob = task.decode(logits)
        assert prob.shape == (1, 1, 2)
        assert prob[0, 0].tolist() == pytest.approx([0.5, 0.75])


def sal_images():
    # Thresholds are 0.2, 0.25, ..., 0.9; probabilities sit between them.
    first = (torch.tensor([[0.27, 0.62, 0.95]]), torch.tensor([[0, 1, 1]]))
    # Empty ground truth (the third pixel is ignored).
    second = (torch.tensor([[0.72, 0.1, 0.99]]), torch.tensor([[0, 0, 255]]))
    return first, second


def test_sal_per_threshold_stats():
    task = Saliency()
    first, second = sal_images()
    stats = task.process(*first)
    assert stats['iou'].shape == (15,)
    # t <= 0.25: all 3 predicted -> 2/3; 0.3..0.6 -> exact; 0.65..0.9 -> 1/2.
    np.testing.assert_allclose(stats['iou'], [2 / 3] * 2 + [1] * 7 + [0.5] * 6)
    np.testing.assert_allclose(stats['precision'], [2 / 3] * 2 + [1] * 13)
    np.testing.assert_allclose(stats['recall'], [1] * 9 + [0.5] * 6)
    stats = task.process(*second)
    # t <= 0.7: a false positive -> 0; above: empty vs empty -> 1.
    np.testing.assert_allclose(stats['iou'], [0] * 11 + [1] * 4)
    # 0/0 counts as 0 for precision (nothing predicted) and recall (nothing salient).
    np.testing.assert_allclose(stats['precision'], 0)
    np.testing.assert_allclose(stats['recall'], 0)


def test_sal_miou_is_max_over_thresholds_of_image_mean():
    task = Saliency()
    stats = [task.process(*image) for image in sal_images()]
    # Image means: 1/3, 1/2, 1/4, 3/4 over the threshold ranges; the max is 0.75 at t >= 0.75.
    result = task.compute(stats)
    assert result['mIoU'] == pytest.approx(75.0)
    # Best F at 0.3..0.6: P = R = 1/2 -> F = 1/2.
    assert result['maxF'] == pytest.approx(50.0)


def test_sal_maxf_uses_beta_squared_0_3():
    task = Saliency()
    stats = task.process(torch.tensor([[0.95, 0.1]]), torch.tensor([[1, 1]]))
    # P = 1, R = 1/2 at every threshold: F = 1.3 * 0.5 / (0.3 + 0.5).
    assert task.compute([stats])['maxF'] == pytest.approx(1.3 * 0.5 / 0.8 * 100)


def vertical_line(height, width, column):
    target = torch.zeros(height, width, dtype=torch.long)
    target[:, column] = 1
    return target


def test_edge_odsf_perfect_and_empty():
    task = Edge()
    target = vertical_line(10, 10, 5)
    perfect = task.process(target.float(), target)
    nothing = task.process(torch.zeros(10, 10), target)
    assert task.compute([perfect])['odsF'] == pytest.approx(100.0)
    assert task.compute([nothing])['odsF'] == 0.0


def test_edge_odsf_by_hand_with_tolerance_and_ignore():
    task = Edge()
    target = vertical_line(10, 10, 5)  # diagonal 14 px -> r = 1
    prob = torch.zeros(10, 10)
    prob[:, 6] = 0.9  # one pixel off: still matched
    prob[0, 0] = 0.9  # a far false positive
    stats = task.process(prob, target)
    # P = 10/11, R = 1 -> F = 20/21 (for t <= 0.9; nothing predicted above).
    assert task.compute([stats])['odsF'] == pytest.approx(100 * 20 / 21)
    target[0, 0] = 255  # the false positive sits on an ignored pixel
    assert task.compute([task.process(prob, target)])['odsF'] == pytest.approx(100.0)


def test_edge_radius_follows_image_diagonal():
    task = Edge()
    target = vertical_line(300, 400, 100)  # diagonal 500 -> r = round(3.75) = 4
    for offset, expected in ((4, 100.0), (5, 0.0)):
        prob = vertical_line(300, 400, 100 + offset).float()
        assert task.compute([task.process(prob, target)])['odsF'] == pytest.approx(expected)


def test_edge_odsf_accumulates_counts_over_images():
    task = Edge()
    target = vertical_line(10, 10, 5)
    half = target.float()
    half[5:] = 0  # rows 0-4 predicted; gt row 5 is 1 px from row 4: recall 6/10
    stats = [task.process(target.float(), target), task.process(half, target)]
    # Summed: P = 15/15, R = 16/20 -> F = 2 * 0.8 / 1.8.
    assert task.compute(stats)['odsF'] == pytest.approx(100 * 1.6 / 1.8)
