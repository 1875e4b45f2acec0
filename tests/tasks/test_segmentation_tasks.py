import math
import pickle

import numpy as np
import pytest
import torch
from tolerance import FEW_OPERATIONS

from adapterkit.registry import TASKS
from adapterkit.tasks import HumanParts, SemSeg


def test_registered_with_their_attributes():
    semseg = TASKS.build(dict(type='semseg', loss_weight=2.0))
    parts = TASKS.build(dict(type='human_parts'))
    assert isinstance(semseg, SemSeg) and semseg.num_outputs == 21 and semseg.loss_weight == 2.0
    assert isinstance(parts, HumanParts) and parts.num_outputs == 7
    assert semseg.metrics == {'mIoU': True} and parts.primary_metric == 'mIoU'


def test_cross_entropy_mean_over_valid_pixels():
    logits = torch.zeros(1, 7, 1, 3)
    logits[0, 2, 0, 0] = math.log(6)  # p(class 2) = 6 / (6 + 6) = 1/2
    logits[0, :, 0, 2] = torch.arange(7.0) * 50  # ignored pixel: huge loss if counted
    target = torch.tensor([[[2, 4, 255]]])
    loss = HumanParts().loss(logits, target)
    # Pixel 0: -ln(1/2); pixel 1: uniform over 7 -> ln 7.
    assert loss.item() == pytest.approx((math.log(2) + math.log(7)) / 2, rel=FEW_OPERATIONS)


def test_no_valid_pixel_gives_zero_connected_loss():
    logits = torch.randn(2, 7, 2, 3, requires_grad=True)
    target = torch.full((2, 2, 3), 255, dtype=torch.long)
    loss = HumanParts().loss(logits, target)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


def test_decode_is_argmax():
    logits = torch.zeros(1, 7, 1, 2)
    logits[0, 3, 0, 0] = 1.0
    logits[0, 6, 0, 1] = 2.0
    assert HumanParts().decode(logits).tolist() == [[[3, 6]]]


def test_confusion_and_miou_by_hand():
    task = HumanParts()
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 2]])
    stats = task.process(pred, target)
    confusion = stats['confusion']
    assert confusion.shape == (7, 7) and confusion.dtype == np.int64
    expected = np.zeros((7, 7), np.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[2, 2] = 1, 1, 2, 1
    np.testing.assert_array_equal(confusion, expected)
    # IoU: class 0 = 1/2, class 1 = 2/3, class 2 = 1; classes 3..6 never occur: skipped.
    assert task.compute([stats])['mIoU'] == pytest.approx((0.5 + 2 / 3 + 1) / 3 * 100)
    assert len(pickle.dumps(stats)) < 1000


def test_miou_accumulates_over_the_set_not_per_image():
    task = SemSeg()
    first = task.process(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    second = task.process(torch.tensor([[1, 1]]), torch.tensor([[1, 1]]))
    # Summed: class 0 TP 1, FN 1 -> 1/2; class 1 TP 2, FP 1 -> 2/3. (Per image it would be 62.5.)
    assert task.compute([first, second])['mIoU'] == pytest.approx((0.5 + 2 / 3) / 2 * 100)


def test_class_only_predicted_counts_as_zero_iou():
    task = SemSeg()
    stats = task.process(torch.tensor([[0, 5]]), torch.tensor([[0, 0]]))
    # Class 0: 1 / 2; class 5: predicted but absent from ground truth -> IoU 0.
    assert task.compute([stats])['mIoU'] == pytest.approx(25.0)


def test_semseg_takes_its_number_of_classes():
    nyud = TASKS.build(dict(type='semseg', num_classes=40))
    assert nyud.num_outputs == 40 and SemSeg().num_outputs == 21
    stats = nyud.process(torch.tensor([[39, 0]]), torch.tensor([[39, 255]]))
    assert stats['confusion'].shape == (40, 40) and nyud.compute([stats])['mIoU'] == 100.0
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match='semseg: num_classes must be an int >= 2'):
            SemSeg(num_classes=bad)
