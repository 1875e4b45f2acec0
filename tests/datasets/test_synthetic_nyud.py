"""Synthetic NYUD-MT rooms: deterministic, read by NYUDMTDataset, depth and normals agree."""
import hashlib
import os

import numpy as np
import pytest

from adapterkit.datasets import NYUDMTDataset, synthesize
from adapterkit.datasets.nyud_mt import NYUD_CLASSES
from adapterkit.datasets.synthetic import _FOCAL

H, W = 48, 64


def _hashes(root):
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), 'rb') as f:
                digests[os.path.relpath(os.path.join(folder, name), root)] = \
                    hashlib.sha256(f.read()).hexdigest()
    return digests


@pytest.fixture(scope='module')
def rooms(tmp_path_factory):
    return synthesize(str(tmp_path_factory.mktemp('nyud') / 'data'), num_train=10, num_val=2,
                      size=(H, W), seed=0, layout='nyud')


def test_same_seed_same_bytes_in_the_nyud_layout(rooms, tmp_path):
    again = synthesize(str(tmp_path / 'again'), num_train=10, num_val=2, size=(H, W), seed=0,
                       layout='nyud')
    other = synthesize(str(tmp_path / 'other'), num_train=10, num_val=2, size=(H, W), seed=1,
                       layout='nyud')
    assert _hashes(again) == _hashes(rooms)
    assert {k.split('/')[0] for k in _hashes(rooms)} == {
        'images', 'segmentation', 'depth', 'normals', 'edge', 'gt_sets', 'README.txt'}
    assert _hashes(other)['images/synth_000001.png'] != _hashes(rooms)['images/synth_000001.png']
    with pytest.raises(ValueError, match="layout 'kitti'"):
        synthesize(str(tmp_path / 'x'), layout='kitti')


def _camera_points(depth):
    """3-D points in the camera frame (x right, y down, z along the axis) of every pixel."""
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    focal = _FOCAL * W
    return np.stack([(xx - W / 2) / focal * depth, (yy - H / 2) / focal * depth, depth], -1)


def test_rooms_are_read_and_their_depth_and_normals_agree(rooms):
    classes, planes_checked, no_depth = set(), 0, 0
    for split, count in (('train', 10), ('val', 2)):
        ds = NYUDMTDataset(rooms, split=split)
        assert len(ds) == count
        for i in range(count):
            gt = ds.load_sample(i)['gt']
            classes |= set(np.unique(gt['semseg']).tolist())
            assert gt['edge'].any() and set(np.unique(gt['edge'])) <= {0, 1}
            # Televisions and mirrors have no depth; everything else is in the room.
            blind = np.isin(gt['semseg'], [NYUD_CLASSES.index('television'),
                                           NYUD_CLASSES.index('mirror')])
            assert (gt['depth'][blind] == 0).all() and (gt['depth'][~blind] > 0).all()
            no_depth += blind.sum()
            # Wall and floor are planes: each point P and its normal n (turned to the camera
            # frame, z forward) satisfy n . P = const, up to the normals' 8-bit encoding:
            # |dn| <= sqrt(3) / 255 per pixel, so two offsets differ by < 0.0136 max|P|.
            points = _camera_points(gt['depth'])
            normals = gt['normals'] * np.float32([1, 1, -1])
            for label in (0, 1):  # wall, floor
                plane = (gt['semseg'] == label) & (gt['depth'] > 0)
                if plane.sum() < 50:
                    continue
                offsets = (normals[plane] * points[plane]).sum(-1)
                spread = np.abs(offsets - np.median(offsets)).max()
                assert spread < 0.02 * np.abs(points[plane]).max(), (split, i, label)
                planes_checked += 1
    assert 255 in classes and len(classes - {255}) >= 6 and max(classes - {255}) < 40
    assert planes_checked >= 12 and no_depth > 0
