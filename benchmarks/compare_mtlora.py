"""adapterkit's MTLoRA against the reference implementation, measured back to back.

    python benchmarks/compare_mtlora.py /path/to/MTLoRA [--threads 2] [--iters 3] [--out FILE]

Each measurement runs in a fresh process (`adapterkit bench` for adapterkit,
`bench_reference_mtlora.py` for the reference), alternating between the two so both see the
same machine load: Swin-T, shared rank 64, task rank 4, 448 px, batch 2:

- training step (forward, losses, backward, AdamW) with the four PASCAL tasks;
- inference forward (adapterkit merged and unmerged; the reference cannot merge);
- training step with 1 task (semseg) and with 5 (semseg, human_parts, sal, normals, edge).

Prints one JSON object per measurement, then a summary with the ratios (adapterkit /
reference); ``--out`` also writes all of it as JSON.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
CONFIG = 'configs/mtlora/mtlora_swin-t_r64_pascal-448.py'
FOUR = 'semseg,human_parts,sal,normals'
RUNS = [  # (name, mode, tasks, merged)
    ('train', 'train', FOUR, False),
    ('infer', 'infer', FOUR, False),
    ('infer_merged', 'infer', FOUR, True),
    ('train_1_task', 'train', 'semseg', False),
    ('train_5_tasks', 'train', FOUR + ',edge', False),
]


def run(command, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f'{" ".join(command)} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkout', help='a checkout of github.com/scale-lab/MTLoRA')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--out', help='also write the results to this JSON file')
    args = parser.parse_args(argv)

    common = ['--threads', str(args.threads), '--iters', str(args.iters),
              '--warmup', str(args.warmup), '--json']
    results = {}
    for name, mode, tasks, merged in RUNS:
        ours = [sys.executable, '-m', 'adapterkit', 'bench', CONFIG, '--mode', mode,
                '--tasks', tasks, *common] + (['--merged'] if merged else [])
        results[f'adapterkit_{name}'] = run(ours, args.threads)
        print(json.dumps(results[f'adapterkit_{name}']), flush=True)
        if not merged:  # the reference cannot merge
            reference = [sys.executable, osp.join(HERE, 'bench_reference_mtlora.py'),
                         args.checkout, '--mode', mode, '--tasks', tasks, *common]
            results[f'reference_{name}'] = run(reference, args.threads)
            print(json.dumps(results[f'reference_{name}']), flush=True)

    def step(key):
        return results[key]['step_s']

    summary = dict(
        train_ratio=step('adapterkit_train') / step('reference_train'),
        memory_ratio=(results['adapterkit_train']['peak_memory_mb']
                      / results['reference_train']['peak_memory_mb']),
        merged_infer_ratio=step('adapterkit_infer_merged') / step('reference_infer'),
        unmerged_infer_ratio=step('adapterkit_infer') / step('reference_infer'),
        added_1_to_5_tasks_s=dict(
            adapterkit=step('adapterkit_train_5_tasks') - step('adapterkit_train_1_task'),
            reference=step('reference_train_5_tasks') - step('reference_train_1_task')))
    added = summary['added_1_to_5_tasks_s']
    summary['added_1_to_5_tasks_ratio'] = added['adapterkit'] / added['reference']
    summary['load_average'] = os.getloadavg()
    print(json.dumps(dict(summary=summary), indent=2))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(results=results, summary=summary), f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
