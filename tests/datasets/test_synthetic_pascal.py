"""The synthetic PASCAL-MT generator: deterministic, and readable by PascalMTDataset."""
import hashlib
import os

import numpy as np
import pytest

from adapterkit.datasets import PascalMTDataset, synthesize

TASKS = ('semseg', 'human_parts', 'sal', 'normals', 'edge')


def _hashes(root):
    """What synthesize wrote (the loader's derived-map cache, `.cache`, is not its output)."""
    digests = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [f for f in subfolders if f != '.cache']
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                digests[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digests


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    return synthesize(str(tmp_path_factory.mktemp('synth') / 'data'), num_train=8, num_val=3,
                      size=64, seed=0)


def test_same_seed_same_bytes_other_seed_other_bytes(synth, tmp_path):
    again = synthesize(str(tmp_path / 'again'), num_train=8, num_val=3, size=64, seed=0)
    other = synthesize(str(tmp_path / 'other'), num_train=8, num_val=3, size=64, seed=1)
    assert _hashes(again) == _hashes(synth)
    other_hashes = _hashes(other)
    assert other_hashes.keys() == _hashes(synth).keys()
    changed = [k for k in other_hashes if other_hashes[k] != _hashes(synth)[k]]
    assert any(k.startswith('JPEGImages') for k in changed)
    assert any(k.startswith('human_parts') for k in changed)


def test_loader_reads_every_pascal_task(synth):
    semseg_classes, parts_per_image = set(), []
    for split, count in (('train', 8), ('val', 3)):
        ds = PascalMTDataset(synth, split=split, tasks=TASKS)
        assert len(ds) == count
        for i in range(len(ds)):
            sample = ds.load_sample(i)
            assert sample['img'].shape == (64, 64, 3)
            assert set(sample['gt']) == set(TASKS)
            for task, target in sample['gt'].items():
                assert target.shape[:2] == (64, 64), task
            semseg_classes |= set(np.unique(sample['gt']['semseg']).tolist())
            parts_per_image.append(set(np.unique(sample['gt']['human_parts']).tolist()))
            normals = sample['gt']['normals']
            valid = normals[..., 0] != 255
            assert valid.any()
            # unit vectors stored in steps of 2/255 (each component within 1/255), plus the
            # float32 rounding of the vectors, their decoding and this norm (12u)
            np.testing.assert_allclose(np.linalg.norm(normals[valid], axis=1), 1, rtol=0,
                                       atol=np.sqrt(3) / 255 + 12 * np.finfo(np.float32).eps / 2)
            assert set(np.unique(sample['gt']['sal'])) == {0, 1}
            assert sample['gt']['edge'].any()
    assert len(semseg_classes) >= 5 and semseg_classes <= set(range(21))
    assert any(len(p - {0, 255}) >= 4 for p in parts_per_image)  # a person with parts
    assert {255} in parts_per_image  # an image without a person


def test_target_folder_rules(synth, tmp_path):
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='foreign'):
        synthesize(str(foreign), num_train=1, num_val=1, size=32)
    assert (foreign / 'keep.txt').read_text() == 'mine'

    previous = synthesize(str(tmp_path / 'prev'), num_train=3, num_val=1, size=32)
    synthesize(previous, num_train=1, num_val=1, size=32)
    assert sorted(os.listdir(os.path.join(previous, 'JPEGImages'))) == [
        'synth_000001.jpg', 'synth_000002.jpg']
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.synth-')]


def test_styles_differ_and_unknown_style_is_rejected(synth, tmp_path):
    pretrain = synthesize(str(tmp_path / 'pre'), num_train=8, num_val=3, size=64, seed=0,
                          style='pretrain')
    a = _hashes(pretrain)
    assert a['JPEGImages/synth_000001.jpg'] != _hashes(synth)['JPEGImages/synth_000001.jpg']
    with pytest.raises(ValueError, match="'cartoon'"):
        synthesize(str(tmp_path / 'x'), style='cartoon')
