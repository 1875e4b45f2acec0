"""`adapterkit train --amp` on CPU: bf16 autocast really active, gradient clipping still on."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')

# A hook the run imports (custom_imports): the dtype of every head output while training.
PROBE = '''
import json
import os.path as osp

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class HeadDtypeProbe(Hook):
    def before_train(self, runner):
        self.dtypes = set()
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        for head in model.heads.values():
            head.register_forward_hook(self.record)

    def record(self, head, args, output):
        if head.training:  # validation runs outside the optimizer's autocast
            self.dtypes.add(str(output.dtype))

    def after_train(self, runner):
        with open(osp.join(runner.work_dir, 'head_dtypes.json'), 'w') as f:
            json.dump(sorted(self.dtypes), f)
'''

CONFIG = """
_base_ = [{quickstart!r}]
custom_imports = dict(imports=['amp_probe'], allow_failed_imports=False)
custom_hooks = [dict(type='SaveMetricsHook'), dict(type='HeadDtypeProbe')]
model = dict(backbone=dict(img_size=64, embed_dim=16, depths=(1, 1, 1, 1),
                           num_heads=(1, 2, 2, 4)))
size = (64, 64)
train_dataloader = dict(batch_size=2, dataset=dict(data_root={root!r}, pipeline=[
    dict(type='MultiTaskRandomFlip', prob=0.5), dict(type='MultiTaskResize', size=size),
    dict(type='PackMultiTaskInputs')]))
val_dataloader = dict(batch_size=4, dataset=dict(data_root={root!r}, pipeline=[
    dict(type='MultiTaskResize', size=size), dict(type='PackMultiTaskInputs')]))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
"""


def test_train_amp_runs_heads_in_bf16_on_cpu_with_clipping(tmp_path):
    from adapterkit.datasets.synthetic import synthesize
    root = synthesize(str(tmp_path / 'data'), num_train=4, num_val=4, size=64, seed=2)
    (tmp_path / 'amp_probe.py').write_text(PROBE)
    config = tmp_path / 'amp.py'
    config.write_text(CONFIG.format(quickstart=QUICKSTART, root=root))
    work_dir = tmp_path / 'run'

    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, '-m', 'adapterkit', 'train', str(config), '--amp',
                           '--work-dir', str(work_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    assert json.loads((work_dir / 'head_dtypes.json').read_text()) == ['torch.bfloat16']
    (scalars,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        steps = [record for record in map(json.loads, f) if 'loss' in record]
    # grad_norm is logged by the clipping step (clip_grad max_norm 5.0 of the recipe)
    assert [record['iter'] for record in steps if 'grad_norm' in record] == [1, 2]
    assert all(record['loss'] == record['loss'] for record in steps)  # not NaN
    assert (work_dir / 'iter_2.pth').is_file()
