"""`make demo`: the main job on the embedded synthetic data, end to end.

Writes the synthetic scenes if absent, trains one single-task reference per task and
the multi-task model under the identical quickstart config, then prints every task's
metrics and Δm of the multi-task model against the single-task references measured
on the same data. Finished runs are reused, so a second demo takes seconds.
"""
import json
import os.path as osp

QUICKSTART = 'configs/quickstart/full_swin-mini_synthetic-128.py'


def _train(config: str, work_dir: str, options: dict) -> dict:
    """Train (or reuse a finished run) and return its final validation metrics."""
    from mmengine.runner import Runner

    from ..config import load_config
    metrics_file = osp.join(work_dir, 'metrics.json')
    cfg = load_config(config, options)
    done = osp.join(work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    if not (osp.isfile(done) and osp.isfile(metrics_file)):
        cfg.work_dir = work_dir
        cfg.experiment_name = osp.basename(work_dir)
        cfg.resume = osp.isfile(osp.join(work_dir, 'last_checkpoint'))  # an interrupted run
        Runner.from_cfg(cfg).train()
    with open(metrics_file) as f:
        return json.load(f)['metrics']


def run_demo(data_root: str = 'data/synthetic', work_dir: str = 'work_dirs/demo',
             config: str = QUICKSTART, num_train: int = 200, num_val: int = 50,
             size: int = 128) -> dict:
    from ..config import load_config
    from ..datasets.synthetic import synthesize
    from ..evaluation import delta_m
    from ..tasks.base import build_tasks

    if not osp.isfile(osp.join(data_root, 'ImageSets', 'Context', 'val.txt')):
        print(f'writing {num_train}+{num_val} synthetic scenes to {data_root} ...', flush=True)
        synthesize(data_root, num_train=num_train, num_val=num_val, size=size, seed=0)
    data = {f'{split}_dataloader.dataset.data_root': data_root
            for split in ('train', 'val', 'test')}
    task_cfgs = dict(load_config(config).model.tasks)
    tasks = build_tasks(task_cfgs)

    references = {}
    for name in tasks:
        print(f'[demo] single-task reference: {name}', flush=True)
        only = {'model.tasks': {'_delete_': True, name: task_cfgs[name]}}
        metrics = _train(config, osp.join(work_dir, f'single_{name}'), {**data, **only})
        references[name] = metrics[f'{name}/{tasks[name].primary_metric}']

    print('[demo] multi-task model', flush=True)
    multitask = _train(config, osp.join(work_dir, 'multitask'), data)
    primary = {name: multitask[f'{name}/{task.primary_metric}'] for name, task in tasks.items()}
    directions = {name: task.metrics[task.primary_metric] for name, task in tasks.items()}
    dm = delta_m(primary, references, directions)

    print(f'\nadapterkit demo: {config} on {data_root} (validation split)\n')
    print(f"{'task':<12} {'metric':<8} {'single-task':>12} {'multi-task':>11}  better")
    for name, task in tasks.items():
        arrow = 'higher' if directions[name] else 'lower'
        print(f'{name:<12} {task.primary_metric:<8} {references[name]:>12.2f} '
              f'{primary[name]:>11.2f}  {arrow}')
    print(f'\nΔm of the multi-task model vs the single-task references: {dm:+.2f}%')
    print('all metrics:', ', '.join(f'{k}={v:.2f}' for k, v in multitask.items()))
    summary = dict(references=references, multitask=multitask, delta_m=dm)
    with open(osp.join(work_dir, 'demo.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    return summary
