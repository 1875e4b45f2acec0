import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import adapterkit.registry  # noqa: F401  (installs the shims)
from adapterkit.compat import CheckpointRefusedError, load_checkpoint_file, point_sample


def test_mmseg_imports_on_mmcv_lite_with_pure_torch_point_sample():
    import mmcv.ops
    from mmseg.models.decode_heads import SegformerHead  # noqa: F401
    from mmseg.utils import mask_classification

    assert mask_classification.point_sample is point_sample
    feats = torch.arange(16.).view(1, 1, 4, 4)
    # Pixel centres of a 4x4 map sit at (i + 0.5) / 4 with align_corners=False.
    points = torch.tensor([[[0.125, 0.125], [0.875, 0.125], [0.625, 0.375]]])
    out = mmcv.ops.point_sample(feats, points)
    assert out.shape == (1, 1, 3)
    # at pixel centres the bilinear weights are exactly 0 and 1: exact values
    assert torch.equal(out[0, 0], torch.tensor([0., 3., 6.]))


def test_other_compiled_ops_raise_module_not_found():
    import mmcv.ops
    with pytest.raises(ModuleNotFoundError, match='roi_align'):
        mmcv.ops.roi_align  # noqa: B018
    with pytest.raises(ModuleNotFoundError, match='compiled'):
        mmcv.ops.sigmoid_focal_loss(torch.zeros(1), torch.zeros(1))
    # mmseg's guarded import of point-head ops falls back as designed.
    from mmseg.models.decode_heads import psa_head
    assert psa_head.PSAMask is None


def test_the_runner_starts_without_transformers_and_adafactor_still_builds():
    """mmengine's optimizer builder imports transformers (2-3 s with peft installed) to
    register Adafactor; adapterkit registers it on demand instead. A fresh process: this
    one has imported mmengine long ago."""
    code = """if True:
        import sys, torch
        import adapterkit.engine, adapterkit.models  # what the commands import first
        from mmengine.optim import build_optim_wrapper
        from mmengine.runner import Runner  # noqa: F401  (and all the Runner imports)
        print('transformers imported:', 'transformers' in sys.modules)
        wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), dict(optimizer=dict(
            type='Adafactor', lr=1e-3, relative_step=False, scale_parameter=False)))
        print('optimizer:', type(wrapper.optimizer).__module__, type(wrapper.optimizer).__name__)
    """
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = [line for line in proc.stdout.splitlines() if line.startswith(('transformers', 'opt'))]
    assert ours == ['transformers imported: False',
                    'optimizer: transformers.optimization Adafactor']


class _RunsCode:
    """A pickle payload that would create a file if it were ever unpickled unsafely."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f'touch {self.path}',))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'evil': _RunsCode(marker)}, bad)
    with pytest.raises(CheckpointRefusedError) as info:
        load_checkpoint_file(bad)
    message = str(info.value)
    assert str(bad) in message and '\n' not in message
    assert 'system' in message
    assert not marker.exists()

    # The same through mmengine's own loader (what Runner.load_checkpoint/resume use).
    from mmengine.runner.checkpoint import _load_checkpoint
    with pytest.raises(CheckpointRefusedError):
        _load_checkpoint(str(bad), map_location='cpu')
    assert not marker.exists()


def test_getattr_in_a_checkpoint_is_limited_to_history_buffer_statistics(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer

    class _Getattr:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    ok = tmp_path / 'ok.pth'
    buf = HistoryBuffer()
    buf.update(1.5)
    torch.save({'hub': buf, 'step': np.int64(3), 'arr': np.ones(2)}, ok)
    loaded = load_checkpoint_file(ok)
    assert loaded['hub'].mean() == 1.5 and loaded['step'] == 3

    bad = tmp_path / 'bad.pth'
    torch.save({'x': _Getattr()}, bad)
    with pytest.raises(CheckpointRefusedError):
        load_checkpoint_file(bad)


def test_plain_tensor_checkpoints_still_load(tmp_path):
    path = tmp_path / 'w.pth'
    torch.save({'model': {'a': torch.ones(3)}}, path)
    assert torch.equal(load_checkpoint_file(path)['model']['a'], torch.ones(3))
