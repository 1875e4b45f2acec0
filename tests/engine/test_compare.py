"""``adapterkit compare``: suites, identical derived configs, running, resuming, the report."""
import csv
import io
import json
import os
import os.path as osp
import re
import statistics

import numpy as np
import pytest
import torch
from PIL import Image

from adapterkit.cli import DEMO_SUITE, main
from adapterkit.engine import hooks
from adapterkit.engine.compare import LATENCY_ITERS, report_from_dirs, run_compare
from adapterkit.engine.compare_suite import (SuiteError, config_diff, load_suite,
                                             outside_allowed, plan)
from adapterkit.engine.compare_report import (REPORT_FILES, build_report, mean_std,
                                              pareto_figure, pareto_front, tasks_figure,
                                              to_markdown, write_report)
from adapterkit.evaluation import delta_m

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')
LORA = osp.join(REPO, 'configs/quickstart/lora_swin-mini_synthetic-128.py')
# Every run: a one-block-per-stage Swin of width 16 at 64 px, 2 iterations of batch 2.
TINY = {
    'model.backbone.img_size': 64,
    'model.backbone.embed_dim': 16,
    'model.backbone.depths': (1, 1, 1, 1),
    'train_dataloader.dataset.pipeline.2.size': (64, 64),
    'val_dataloader.dataset.pipeline.0.size': (64, 64),
    'test_dataloader.dataset.pipeline.0.size': (64, 64),
    'train_dataloader.batch_size': 2,
    'val_dataloader.batch_size': 2,
    'train_cfg.max_iters': 2,
    'train_cfg.val_interval': 2,
    'default_hooks.checkpoint.interval': 1,
}
# saliency and normals: metrics that are never 0, so Δm exists even after 2 iterations
TASKS = ['sal', 'normals']


def write_suite(folder, name='suite', **keys) -> str:
    path = osp.join(str(folder), f'{name}.py')
    with open(path, 'w') as f:
        f.write(''.join(f'{key} = {value!r}\n' for key, value in keys.items()))
    return path


def data(root, seed=0, num_train=4, **extra):
    return dict(root=str(root), synthesize=dict(num_train=num_train, num_val=2, size=64,
                                                seed=seed, **extra))


@pytest.fixture
def one_thread():
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ suites
GOOD = dict(base=QUICKSTART, tasks=TASKS, members=dict(full=dict(adapter=dict(type='Full'))))


@pytest.mark.parametrize('change, key', [
    (dict(membrs={}), 'membrs'),
    (dict(base=None), 'base'),
    (dict(members={}), 'members'),
    (dict(members=dict(a=dict(adpter=dict(type='LoRA')))), 'members.a'),
    (dict(members=dict(a=dict(rank=4))), 'members.a'),
    (dict(members={'single-task_x': dict(adapter=dict(type='Full'))}), 'members.single-task_x'),
    (dict(members=dict(a=dict(adapter='LoRA'))), 'members.a.adapter'),
    (dict(seeds=[]), 'seeds'),
    (dict(tasks=['sal', 'depthx']), 'tasks'),
    (dict(references=dict(sal=60.0)), 'references'),
    (dict(references='paper'), 'references'),
    (dict(data=dict(path='data/x')), 'data'),
    (dict(pretrained='a.pth', pretrain=dict(data=dict(root='d'))), 'pretrain'),
    (dict(pretrain=dict(options={})), 'pretrain.data'),
])
def test_a_bad_suite_is_one_error_naming_the_key(tmp_path, change, key):
    path = write_suite(tmp_path, **{**GOOD, **change})
    with pytest.raises(SuiteError, match=f': {re.escape(key)}: '):
        load_suite(path)


def test_the_cli_reports_a_bad_suite_in_one_line(tmp_path, capsys):
    path = write_suite(tmp_path, **{**GOOD, 'seeds': 'zero'})
    assert main(['compare', path]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'seeds' in err


def test_the_shipped_suites_derive_identical_configs():
    quickstart = plan(load_suite(DEMO_SUITE), 'work_dirs/unused')
    assert [r.name for r in quickstart] == [
        'pretrain', 'single-task_semseg', 'single-task_human_parts', 'single-task_sal',
        'single-task_normals', 'full', 'decoder_only', 'bitfit', 'lora', 'adapter', 'mtlora',
        'mtlora_plus']
    table1 = plan(load_suite(osp.join(REPO, 'configs/compare/pascal_table1.py')), 'unused')
    for run in quickstart + table1:
        assert run.error is None, run.error
    pretrained = {r.cfg.model.backbone.pretrained for r in quickstart if r.name != 'pretrain'}
    assert pretrained == {osp.join('work_dirs/unused', 'pretrain', 'backbone.safetensors')}


# ------------------------------------------------------------------ derivation
def test_runs_differ_from_the_base_only_in_adapter_and_reference_tasks(tmp_path):
    suite = load_suite(write_suite(
        tmp_path, base=QUICKSTART, tasks=TASKS, options=TINY, members=dict(
            full=QUICKSTART, lora=LORA, lora_r2=dict(config=LORA, adapter=dict(rank=2)),
            bitfit=dict(adapter=dict(type='BitFit')))))
    runs = {r.name: r for r in plan(suite, str(tmp_path / 'work'))}
    assert list(runs) == ['single-task_sal', 'single-task_normals', 'full', 'lora', 'lora_r2',
                          'bitfit']
    common = suite.common_config(0)
    for run in runs.values():
        assert run.error is None, run.error
        assert run.diff == config_diff(common, run.cfg)
        assert outside_allowed(run.diff, reference=run.kind == 'reference') == []
    assert runs['full'].diff == []  # the base itself is full fine-tuning
    assert all(k.startswith('model.adapter.') for k in runs['lora'].diff)
    assert all(k.startswith('model.adapter.')
               for k in config_diff(runs['lora'].cfg, runs['bitfit'].cfg))
    # an adapter next to a config merges into that config's adapter
    lora, lora_r2 = runs['lora'].cfg.model.adapter, runs['lora_r2'].cfg.model.adapter
    assert (lora.rank, lora_r2.rank, lora_r2.targets) == (8, 2, lora.targets)
    reference = runs['single-task_normals'].cfg
    assert list(reference.model.tasks) == ['normals']
    assert reference.train_dataloader.dataset.tasks == ['normals']
    assert reference.model.adapter.type == 'Full'


def test_a_member_that_changes_more_than_its_adapter_is_refused(tmp_path):
    other = tmp_path / 'other.py'
    other.write_text(f"_base_ = [{QUICKSTART!r}]\nmodel = dict(adapter=dict(type='BitFit'))\n"
                     "optim_wrapper = dict(optimizer=dict(lr=0.01))\n")
    suite = load_suite(write_suite(tmp_path, **{**GOOD, 'references': dict(sal=50, normals=20),
                                                'members': dict(ok=QUICKSTART, other=str(other))}))
    runs = {r.name: r for r in plan(suite, str(tmp_path / 'work'))}
    assert runs['ok'].error is None
    assert runs['other'].cfg is None
    assert 'outside model.adapter: optim_wrapper.optimizer.lr' in runs['other'].error
    assert outside_allowed(['model.adapter.rank', 'model.tasks.sal', 'optim_wrapper.x']) == [
        'model.tasks.sal', 'optim_wrapper.x']


def test_only_selects_members_and_rejects_unknown_names(tmp_path):
    suite = load_suite(write_suite(tmp_path, **{**GOOD, 'members': dict(
        full=QUICKSTART, bitfit=dict(adapter=dict(type='BitFit')))}))
    selected = {r.name: r.selected for r in plan(suite, str(tmp_path), only=['bitfit'])}
    assert selected == {'single-task_sal': False, 'single-task_normals': False, 'full': False,
                        'bitfit': True}
    with pytest.raises(SuiteError, match="--only: no member 'lora'"):
        plan(suite, str(tmp_path), only=['lora'])


# ------------------------------------------------------------------ aggregation
DIRECTION = dict(sal=('mIoU', True), normals=('mean', False))


def record(name, kind, seed, values, order=0, trainable=100, status='ok', **extra):
    base = dict(suite='hand', base='base.py', name=name, kind=kind, seed=seed, order=order,
                config_diff=[], references='single-task', tasks=list(values),
                adapter=dict(type='Full'), status=status)
    if status != 'ok':
        return dict(base, error=extra.get('error', 'RuntimeError: boom'))
    return dict(
        base, params=dict(total=1000, trainable=trainable, backbone_adapter=0),
        full_params=1000, metrics={f'{t}/{DIRECTION[t][0]}': v for t, v in values.items()},
        primary={t: dict(metric=DIRECTION[t][0], higher_is_better=DIRECTION[t][1], value=v)
                 for t, v in values.items()},
        train=dict(time_s=extra.get('time_s', 10.0), images=40, iters=4, peak_memory_mb=500.0),
        inference=dict(latency_ms=extra.get('latency_ms', 5.0), merged=extra.get('merged', True),
                       **({'latency_ms_all': extra['passes']} if 'passes' in extra else {})))


def hand_records():
    return [
        record('single-task_sal', 'reference', 0, dict(sal=50.0), 0, trainable=60),
        record('single-task_normals', 'reference', 0, dict(normals=20.0), 1, trainable=60),
        record('single-task_sal', 'reference', 1, dict(sal=54.0), 0, trainable=60),
        record('single-task_normals', 'reference', 1, dict(normals=22.0), 1, trainable=60,
               time_s=30.0),
        record('lora', 'member', 0, dict(sal=55.0, normals=19.0), 2, trainable=10),
        record('lora', 'member', 1, dict(sal=59.0, normals=21.0), 2, trainable=10),
        record('adapter', 'member', 0, dict(sal=51.0, normals=19.5), 3, trainable=20,
               merged=False),
        record('adapter', 'member', 1, dict(sal=0, normals=0), 3, status='failed'),
    ]


def test_aggregation_over_seeds_by_hand():
    report = build_report(hand_records())
    references = {t: r['value'] for t, r in report['references'].items()}
    assert references == dict(sal=52.0, normals=21.0)  # the mean over the two seeds
    higher = dict(sal=True, normals=False)
    rows = {row['method']: row for row in report['methods']}
    assert list(rows) == ['single-task (2 models)', 'lora', 'adapter']

    lora = rows['lora']
    assert lora['seeds'] == [0, 1]
    assert lora['metrics']['sal']['mean'] == pytest.approx(57.0)
    assert lora['metrics']['sal']['std'] == pytest.approx(statistics.stdev([55.0, 59.0]))
    seed_dm = [delta_m(dict(sal=55.0, normals=19.0), references, higher),
               delta_m(dict(sal=59.0, normals=21.0), references, higher)]
    assert seed_dm[0] == pytest.approx(((55 - 52) / 52 - (19 - 21) / 21) * 100 / 2)
    assert lora['delta_m']['mean'] == pytest.approx(statistics.mean(seed_dm))
    assert lora['delta_m']['std'] == pytest.approx(statistics.stdev(seed_dm))
    assert lora['trainable_percent_of_full'] == pytest.approx(1.0)
    assert lora['train_images_per_s']['mean'] == pytest.approx(4.0)

    single = rows['single-task (2 models)']
    assert single['trainable'] == 120  # the two models together
    assert single['train_time_s']['mean'] == pytest.approx((20.0 + 40.0) / 2)
    assert single['train_images_per_s']['mean'] == pytest.approx((80 / 20 + 80 / 40) / 2)
    assert single['latency_ms']['median'] == pytest.approx(10.0)  # 5 ms per model
    assert single['delta_m']['mean'] == pytest.approx(0.0, abs=1e-12)

    adapter = rows['adapter']  # one seed failed: the other is reported, with the error
    assert adapter['seeds'] == [0] and adapter['metrics']['sal']['std'] is None
    assert adapter['notes'] == ['seed 1: RuntimeError: boom']
    assert adapter['latency_merged'] is False

    assert mean_std([]) == dict(mean=None, std=None, n=0, ci95=None)
    assert pareto_front([(10, 1.0), (20, 0.5), (20, 2.0), (5, -1.0), (30, 2.0)]) == [0, 2, 3]


def test_the_report_files(tmp_path):
    report = write_report(hand_records(), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(REPORT_FILES)  # and no .tmp left over
    with open(tmp_path / 'results.json') as f:
        saved = json.load(f)
    assert saved['methods'][1]['metrics']['sal']['mean'] == pytest.approx(57.0)
    assert len(saved['runs']) == 8
    rows = list(csv.DictReader(io.StringIO((tmp_path / 'results.csv').read_text())))
    assert [r['method'] for r in rows] == ['single-task (2 models)', 'lora', 'adapter']
    assert float(rows[1]['sal/mIoU']) == pytest.approx(57.0)
    assert float(rows[1]['delta_m']) == pytest.approx(report['methods'][1]['delta_m']['mean'],
                                                      abs=1e-4)
    assert rows[2]['notes'] == 'seed 1: RuntimeError: boom'
    markdown = (tmp_path / 'results.md').read_text()
    assert '| lora ' in markdown and '57.00 ± 2.83' in markdown
    assert '## Config diff' in markdown and '`Full()`' in markdown
    assert 'single-task runs, mean over 2 seeds' in markdown
    for name in ('pareto.png', 'tasks.png'):
        with Image.open(tmp_path / name) as image:
            image.verify()
            assert image.format == 'PNG'


def test_latency_is_the_median_and_quartiles_of_every_timed_pass(tmp_path):
    passes = {0: [10.0, 11.0, 12.0, 50.0], 1: [9.0, 10.0, 11.0, 13.0]}  # one slow pass
    records = []
    for seed in (0, 1):
        records += [
            record('single-task_sal', 'reference', seed, dict(sal=50.0), 0,
                   passes=[5.0, 5.0, 6.0, 6.0]),
            record('single-task_normals', 'reference', seed, dict(normals=20.0), 1,
                   passes=[1.0, 2.0, 3.0, 4.0]),
            record('lora', 'member', seed, dict(sal=55.0, normals=19.0), 2,
                   passes=passes[seed])]
    report = write_report(records, str(tmp_path))
    single, lora = report['methods']
    # pooled over seeds: 9 10 10 11 11 12 13 50; quartiles between order statistics
    assert lora['latency_ms'] == dict(median=11.0, q1=10.0, q3=12.25, n=8)
    # two models one after the other: their passes summed pass by pass (6, 7, 9, 10)
    assert single['latency_ms'] == dict(median=8.0, q1=6.75, q3=9.25, n=8)
    rows = list(csv.DictReader(io.StringIO((tmp_path / 'results.csv').read_text())))
    assert [(r['latency_ms'], r['latency_ms_q1'], r['latency_ms_q3'], r['latency_passes'])
            for r in rows] == [('8.0', '6.75', '9.25', '8'), ('11.0', '10.0', '12.25', '8')]
    markdown = (tmp_path / 'results.md').read_text()
    assert '| 11.00 (10.00-12.25) ' in markdown and 'over 8 timed passes' in markdown


def close_records(seeds=(0,)):
    """Methods whose points nearly coincide on pareto.png (as bitfit and decoder-only do in
    the demo) and metrics a point apart."""
    records = []
    for seed in seeds:
        records += [
            record('single-task_sal', 'reference', seed, dict(sal=58.0 + seed), 0,
                   trainable=2000),
            record('single-task_normals', 'reference', seed, dict(normals=15.9), 1,
                   trainable=2000),
            record('decoder_only', 'member', seed, dict(sal=52.2, normals=16.7), 2,
                   trainable=1460),
            record('bitfit', 'member', seed, dict(sal=51.9 + seed, normals=16.7), 3,
                   trainable=1470),
            record('lora', 'member', seed, dict(sal=52.4, normals=16.2), 4, trainable=1580),
            record('mtlora', 'member', seed, dict(sal=51.0, normals=15.5), 5, trainable=1850),
            record('mtlora_plus', 'member', seed, dict(sal=51.8, normals=15.9), 6,
                   trainable=1630),
            record('full', 'member', seed, dict(sal=41.8, normals=25.2), 7, trainable=3740)]
    return records


def drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def test_pareto_names_every_point_apart_with_a_line_to_it():
    from matplotlib.text import Annotation, Text
    report = build_report(close_records())
    fig = pareto_figure(report)
    renderer = drawn(fig)
    ax = fig.axes[0]
    labels = {a.get_text(): a for a in ax.texts if isinstance(a, Annotation)}
    points = {r['method']: (r['trainable'], r['delta_m']['mean']) for r in report['methods']}
    assert set(labels) == set(points)
    markers = {tuple(xy) for line in ax.lines if line.get_marker() == 'o'
               for xy in line.get_xydata()}
    pixel = fig.dpi / 72  # points to pixels
    for name, label in labels.items():
        assert label.xy == points[name] and points[name] in markers  # its own, drawn, point
        assert label.arrow_patch is not None, f'{name}: no line to its point'
        ends = label.arrow_patch.get_path().vertices[[0, -1]]
        box = Text.get_window_extent(label, renderer)  # the name's, without its line
        at_point = ax.transData.transform(points[name])
        assert np.hypot(*(ends[-1] - at_point)) <= 5 * pixel, name  # the line ends there
        near = 4 * pixel  # matplotlib starts the line 2 points out of the name's box
        assert box.x0 - near <= ends[0][0] <= box.x1 + near and \
            box.y0 - near <= ends[0][1] <= box.y1 + near, name  # ... from the name
    boxes = [Text.get_window_extent(label, renderer) for label in labels.values()]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.mark.parametrize('seeds', [(0,), (0, 1)], ids=['one seed', 'two seeds'])
def test_task_bars_start_at_zero_print_their_values_and_spread_only_over_seeds(seeds):
    from matplotlib.container import ErrorbarContainer
    report = build_report(close_records(seeds))
    fig = tasks_figure(report)
    drawn(fig)
    rows = [r for r in report['methods'] if r['seeds']]
    for ax, task in zip(fig.axes, report['tasks']):
        means = [r['metrics'][task]['mean'] for r in rows]
        low, high = ax.get_xlim()
        assert low == 0 and high >= max(means)  # lengths compare as the values do
        assert [bar.get_width() for bar in ax.patches] == pytest.approx(means)
        texts = [t.get_text().strip() for t in ax.texts]
        assert texts == [f'{m:.2f}' for m in means]  # every value printed
        errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(errorbars) == (len(rows) if len(seeds) > 1 else 0)
    title = fig.get_suptitle()
    assert ('std over 2 seeds' in title) == (len(seeds) > 1), title


# ------------------------------------------------------------------ running
@pytest.fixture(scope='module')
def finished_suite(tmp_path_factory):
    """A whole suite, run once: pretraining, 2 single-task references, full fine-tuning,
    LoRA from its config file, and a member whose strategy does not exist."""
    folder = tmp_path_factory.mktemp('compare')
    suite = write_suite(
        folder, name='tiny', base=QUICKSTART, tasks=TASKS, options=TINY,
        data=data(folder / 'data'),
        pretrain=dict(data=data(folder / 'pretrain-data', seed=1, style='pretrain')),
        members=dict(full=dict(adapter=dict(type='Full')), lora=LORA,
                     broken=dict(adapter=dict(type='NoSuchStrategy'))))
    work_dir = str(folder / 'work')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = run_compare(suite, work_dir)
    finally:
        torch.set_num_threads(threads)
    return suite, work_dir, report


def test_every_member_runs_and_a_failing_one_is_reported(finished_suite):
    _, work_dir, report = finished_suite
    rows = {row['method']: row for row in report['methods']}
    assert list(rows) == ['single-task (2 models)', 'full', 'lora', 'broken']
    for name in ('single-task (2 models)', 'full', 'lora'):
        assert rows[name]['seeds'] == [0] and rows[name]['delta_m']['mean'] is not None
        latency = rows[name]['latency_ms']
        assert 0 < latency['q1'] <= latency['median'] <= latency['q3']
        assert latency['n'] == LATENCY_ITERS and rows[name]['latency_merged']
        assert rows[name]['train_time_s']['mean'] > 0
    assert rows['lora']['trainable'] < rows['full']['trainable']
    assert rows['broken']['seeds'] == []
    assert 'NoSuchStrategy' in rows['broken']['notes'][0]
    assert sorted(f for f in os.listdir(work_dir)
                  if '.' in f and not f.startswith('.')) == sorted(REPORT_FILES)
    assert '| broken ' in open(osp.join(work_dir, 'results.md')).read()


def test_every_run_starts_from_the_pretrained_backbone(finished_suite):
    from safetensors.torch import load_file
    _, work_dir, _ = finished_suite
    pretrained = load_file(osp.join(work_dir, 'pretrain', 'backbone.safetensors'))
    assert 'layers.1.downsample.reduction.weight' in pretrained  # timm's layout
    # LoRA keeps the pretrained weights frozen: its final checkpoint still holds them.
    lora = torch.load(osp.join(work_dir, 'lora', 'seed_0', 'iter_2.pth'), map_location='cpu',
                      weights_only=False)['state_dict']
    assert torch.equal(lora['backbone.patch_embed.proj.weight'],  # frozen: bit for bit
                       pretrained['patch_embed.proj.weight'])


def test_a_rerun_reuses_finished_members(finished_suite, capsys, one_thread):
    suite, work_dir, report = finished_suite
    files = [osp.join(work_dir, name, 'seed_0', f) for name in ('full', 'lora')
             for f in ('metrics.json', 'run.json', 'iter_2.pth')]
    before = [os.stat(f).st_mtime_ns for f in files]
    again = run_compare(suite, work_dir)
    assert [os.stat(f).st_mtime_ns for f in files] == before
    out = capsys.readouterr().out
    assert out.count('finished earlier: reused') == 5  # pretraining, 2 references, 2 members
    assert [r['method'] for r in again['methods']] == [r['method'] for r in report['methods']]

    # --from-dirs: the same report from the work dir alone
    copy = report_from_dirs([work_dir], osp.join(work_dir, 'copy'))
    assert copy['methods'] == again['methods']


def test_an_interrupted_member_resumes_and_completes(tmp_path, monkeypatch, capsys, one_thread):
    suite = write_suite(tmp_path, base=QUICKSTART, tasks=TASKS, options=TINY,
                        data=data(tmp_path / 'data'), references=dict(sal=50.0, normals=30.0),
                        members=dict(full=QUICKSTART))
    run_dir = tmp_path / 'work' / 'full' / 'seed_0'
    original = hooks.RunMonitorHook.after_train_iter

    def killed_in_the_second_iteration(self, runner, batch_idx, data_batch=None,
                                       outputs=None):
        if runner.iter == 1:
            raise RuntimeError('simulated kill')
        original(self, runner, batch_idx, data_batch, outputs)

    monkeypatch.setattr(hooks.RunMonitorHook, 'after_train_iter',
                        killed_in_the_second_iteration)
    first = run_compare(suite, str(tmp_path / 'work'))
    assert first['methods'][0]['notes'] == ['seed 0: RuntimeError: simulated kill']
    assert (run_dir / 'iter_1.pth').is_file() and not (run_dir / 'iter_2.pth').exists()

    monkeypatch.setattr(hooks.RunMonitorHook, 'after_train_iter', original)
    second = run_compare(suite, str(tmp_path / 'work'))
    assert 'resuming from iter_1.pth' in capsys.readouterr().out
    row = second['methods'][0]
    assert row['seeds'] == [0] and row['delta_m']['mean'] is not None  # fixed references
    saved = json.loads((run_dir / 'run.json').read_text())
    assert saved['train']['iters'] == 2  # one before the kill (from the checkpoint), one after

    # Killed during the final validation: only the validation runs again.
    checkpoint = os.stat(run_dir / 'iter_2.pth').st_mtime_ns
    (run_dir / 'metrics.json').unlink()
    run_compare(suite, str(tmp_path / 'work'))
    assert 'final validation' in capsys.readouterr().out
    assert os.stat(run_dir / 'iter_2.pth').st_mtime_ns == checkpoint
    assert json.loads((run_dir / 'metrics.json').read_text())['iter'] == 2

    # A work dir that holds a run of another config is refused, not mixed.
    changed = write_suite(tmp_path, name='changed', base=QUICKSTART, tasks=TASKS,
                          options={**TINY, 'optim_wrapper.optimizer.lr': 0.01},
                          data=data(tmp_path / 'data'), references=dict(sal=50.0, normals=30.0),
                          members=dict(full=QUICKSTART))
    refused = run_compare(changed, str(tmp_path / 'work'))
    assert 'holds a run of another config' in refused['methods'][0]['notes'][0]


def test_a_metric_without_a_value_is_reported_as_missing_not_as_an_error(tmp_path):
    # metrics.json holds null for a task without valid pixels; a reference or member with
    # such a value has no Δm, the rest of the report stands.
    records = hand_records()[:6]
    records[1]['primary']['normals']['value'] = None  # single-task normals, seed 0
    records[4]['primary']['normals']['value'] = None  # lora, seed 0
    report = write_report(records, str(tmp_path))
    assert report['references']['normals']['value'] == 22.0  # seed 1 alone
    lora = next(row for row in report['methods'] if row['method'] == 'lora')
    assert lora['metrics']['normals']['mean'] == 21.0 and lora['metrics']['normals']['n'] == 1
    assert lora['delta_m']['n'] == 1  # seed 1 only
    assert sorted(os.listdir(tmp_path)) == sorted(REPORT_FILES)
    with open(tmp_path / 'results.json') as f:
        json.loads(f.read(), parse_constant=lambda name: pytest.fail(f'{name} in JSON'))


def test_a_truncated_final_checkpoint_is_no_progress_and_the_run_resumes(
        finished_suite, capsys, one_thread):
    """Killed while its final checkpoint was written: the rerun drops the cut file and
    resumes from the checkpoint before, instead of failing on it forever."""
    suite, work_dir, _ = finished_suite
    run_dir = osp.join(work_dir, 'full', 'seed_0')
    final = osp.join(run_dir, 'iter_2.pth')
    with open(final, 'rb') as f:
        head = f.read(os.path.getsize(final) // 2)
    with open(final, 'wb') as f:
        f.write(head)
    again = run_compare(suite, work_dir, only=['full'])
    out = capsys.readouterr().out
    assert 'iter_2.pth is incomplete (killed while it was written): removed' in out
    assert 'resuming from iter_1.pth' in out
    row = next(r for r in again['methods'] if r['method'] == 'full')
    assert row['seeds'] == [0] and row['notes'] == []
    torch.load(final, map_location='cpu', weights_only=False)  # whole again


def test_a_moved_work_dir_keeps_its_finished_runs(finished_suite, tmp_path, capsys,
                                                  one_thread):
    """Run configs name the pretrained backbone inside the work dir: a work dir moved
    elsewhere is still the same experiment, not another config."""
    import shutil
    suite, work_dir, report = finished_suite
    moved = str(tmp_path / 'elsewhere' / 'work')
    shutil.copytree(work_dir, moved)
    again = run_compare(suite, moved)
    out = capsys.readouterr().out
    assert out.count('finished earlier: reused') == 5 and 'another config' not in out
    assert [r['seeds'] for r in again['methods']] == [r['seeds'] for r in report['methods']]
    # the stored configs now name the backbone where it is
    assert moved in open(osp.join(moved, 'lora', 'seed_0', 'config.py')).read()


def test_a_second_compare_on_a_work_dir_in_use_is_refused_in_one_line(tmp_path, capsys,
                                                                       lock_holder):
    path = write_suite(tmp_path, **GOOD)
    work_dir = str(tmp_path / 'work')
    holder = lock_holder(work_dir)  # another process, as a first compare would be
    assert main(['compare', path, '--work-dir', work_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f'{work_dir} is in use by another adapterkit process (pid {holder.pid})' in err


def test_a_run_dir_of_another_config_is_not_run_and_left_alone(tmp_path, capsys):
    """Not among --only, and its dir holds another config: 'not run', never 'failed'."""
    suite = write_suite(tmp_path, **{**GOOD, 'references': dict(sal=50.0, normals=30.0),
                                     'data': data(tmp_path / 'data'), 'options': TINY})
    run_dir = tmp_path / 'work' / 'full' / 'seed_0'
    run_dir.mkdir(parents=True)
    (run_dir / 'config.py').write_text("model = dict(type='Other')\n")
    report = run_compare(suite, str(tmp_path / 'work'))
    assert 'not run: SuiteError: ' in capsys.readouterr().out
    assert report['methods'][0]['notes'][0].startswith('seed 0: SuiteError: ')
    assert sorted(os.listdir(run_dir)) == ['.adapterkit.lock', 'config.py']
    assert (run_dir / 'config.py').read_text() == "model = dict(type='Other')\n"


# ------------------------------------------------------------------ seeds and the paper
def three_seed_records():
    """LoRA and MTLoRA over seeds 0-2 against fixed references sal 50 (higher is better)
    and normals 20 (lower is better): Δm = ((sal - 50) / 50 - (normals - 20) / 20) * 50."""
    lora = [(50.0, 20.0), (52.0, 20.0), (57.0, 20.0)]  # Δm 0, 2, 7
    mtlora = [(51.0, 19.0), (55.0, 18.5), (58.0, 19.0)]  # Δm 3.5, 8.75, 10.5
    records = []
    for order, (name, rows) in enumerate((('lora', lora), ('mtlora', mtlora))):
        for seed, (sal, normals) in enumerate(rows):
            r = record(name, 'member', seed, dict(sal=sal, normals=normals), order)
            r.update(references=dict(sal=50.0, normals=20.0), compare_to='lora',
                     published=dict(sal=60.0, normals=18.0, delta_m=9.0) if name == 'mtlora'
                     else None)
            records.append(r)
    return records


def test_confidence_intervals_and_paired_differences_match_the_hand_computation():
    # By hand, t_{0.975, 2} = 4.303 from the t table; an interval's half-width is
    # t * s / sqrt(3), so the table's three decimals bound its error by 0.0005 / 4.303 of it.
    t, root3 = 4.303, 3 ** 0.5

    def check(stat, mean, std, contains_zero=None):
        half = t * std / root3
        assert stat['mean'] == pytest.approx(mean, abs=1e-9)
        assert stat['std'] == pytest.approx(std, rel=1e-9)
        for got, want in zip(stat['ci95'], (mean - half, mean + half)):
            assert got == pytest.approx(want, abs=0.0005 / t * half + 1e-9)
        if contains_zero is not None:
            assert stat['contains_zero'] is contains_zero

    report = build_report(three_seed_records())
    lora, mtlora = report['methods']
    # sal 50, 52, 57: mean 53, deviations -3, -1, 4, s^2 = 26 / 2 = 13
    check(lora['metrics']['sal'], 53.0, 13 ** 0.5)  # [44.0426, 61.9574]
    check(lora['delta_m'], 3.0, 13 ** 0.5)  # Δm 0, 2, 7: [-5.9574, 11.9574]
    paired = report['paired']
    assert [p['method'] for p in paired] == ['mtlora']
    # Δm differences 3.5, 6.75, 3.5: mean 4.5833, s^2 = 7.0417 / 2: [-0.0783, 9.2449], 0 in it
    check(paired[0]['delta_m'], 55 / 12, (7.041666666666667 / 2) ** 0.5, contains_zero=True)
    # normals differences -1, -1.5, -1: mean -7/6, s^2 = (1/6) / 2: [-1.8838, -0.4495]
    check(paired[0]['metrics']['normals'], -7 / 6, (1 / 12) ** 0.5, contains_zero=False)
    assert paired[0]['delta_m']['seeds'] == [0, 1, 2]

    markdown = to_markdown(report)
    assert '## Paired differences against lora' in markdown
    assert '| mtlora − lora | 3 | +4.58 [-0.08, +9.24] *n.s.* |' in markdown
    assert '-1.17 [-1.88, -0.45] |' in markdown  # normals: no n.s. mark
    assert '| lora | 3 | +3.00 [-5.96, +11.96] | 53.00 [44.04, 61.96] |' in markdown
    # --paired-against another member
    assert [p['method'] for p in build_report(three_seed_records(), 'mtlora')['paired']] == [
        'lora']


def test_published_numbers_stand_beside_the_measured_ones(tmp_path):
    report = write_report(three_seed_records(), str(tmp_path))
    assert report['published'] == dict(mtlora=dict(sal=60.0, normals=18.0, delta_m=9.0))
    markdown = (tmp_path / 'results.md').read_text()
    # measured means: sal 54.67, normals 18.83, Δm (3.5 + 8.75 + 10.5) / 3 = 7.58
    assert '| mtlora | 60.00 / 54.67 | 18.00 / 18.83 | +9.00 / +7.58 | — / 100 |' in markdown
    with Image.open(tmp_path / 'published.png') as image:
        assert image.format == 'PNG'


def test_the_shipped_table1_suite_gives_the_papers_numbers_for_its_members():
    suite = load_suite(osp.join(REPO, 'configs/compare/pascal_table1.py'))
    assert set(suite.published) == set(suite.members) and suite.compare_to == 'lora'
    references = suite.references
    higher = dict(semseg=True, human_parts=True, sal=True, normals=False)
    complete = [name for name, row in suite.published.items()
                if all(t in row for t in references)]
    assert len(complete) == 7
    for name in complete:
        # Every published value, reference and Δm is rounded to 0.005, so the recomputed Δm
        # is within 0.005 + (100 / 4) * sum_t 0.005 * (1 / r_t + v_t / r_t^2) of it.
        row = suite.published[name]
        recomputed = delta_m({t: row[t] for t in references}, references, higher)
        bound = 0.005 + 25 * sum(0.005 * (1 / r + row[t] / r ** 2)
                                 for t, r in references.items())
        assert recomputed == pytest.approx(row['delta_m'], abs=bound), name


# ------------------------------------------------------------------ search
def test_the_held_out_part_is_disjoint_from_the_training_part_and_from_val(tmp_path):
    from adapterkit.config import load_config
    from adapterkit.datasets import holdout_ids
    from adapterkit.datasets.synthetic import synthesize
    from adapterkit.engine.compare_search import holdout_split
    from adapterkit.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('adapterkit')
    synthesize(str(tmp_path / 'data'), num_train=10, num_val=3, size=64, seed=0)
    cfg = load_config(QUICKSTART, {f'{s}_dataloader.dataset.data_root': str(tmp_path / 'data')
                                   for s in ('train', 'val')})
    val_ids = {DATASETS.build(cfg.val_dataloader.dataset).get_data_info(i)['img_id']
               for i in range(3)}
    train_ids = [f'synth_{i:06d}' for i in range(1, 11)]
    holdout_split(cfg, dict(holdout=0.2, seed=0))
    train = DATASETS.build(cfg.train_dataloader.dataset)
    heldout = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(heldout.ids) == 2 and len(train.ids) == 8  # round(0.2 * 10)
    assert set(heldout.ids).isdisjoint(train.ids) and set(heldout.ids).isdisjoint(val_ids)
    assert sorted(set(heldout.ids) | set(train.ids)) == train_ids
    # held out by id: the same ids whatever the list's order, others with another seed
    assert holdout_ids(train_ids[::-1], 0.2, 0) == heldout.ids[::-1]
    assert holdout_ids(train_ids, 0.2, 1) != heldout.ids
    # the held-out part is read with the validation pipeline (no augmentation)
    assert cfg.val_dataloader.dataset.dataset.pipeline[0].type == 'MultiTaskResize'
    assert len(heldout[0]['inputs'].shape) == 3


def test_the_chosen_point_is_the_one_with_the_best_held_out_score():
    from adapterkit.engine.compare_search import choose_point, point_score
    records = [dict(score=s) for s in (1.0, None, 3.0, 2.0, 3.0)]
    assert choose_point(records, lambda r: r['score']) == 2  # the first of a tie
    assert choose_point([dict(score=None)], lambda r: r['score']) is None
    # a lower-is-better metric: the smaller error scores higher
    search = dict(score='normals/mean', higher_is_better=False)
    errors = [dict(status='ok', metrics={'normals/mean': v}) for v in (30.0, 20.0, 25.0)]
    assert choose_point(errors, lambda r: point_score(r, search, {})) == 1
    assert point_score(dict(status='failed'), search, {}) is None


@pytest.mark.parametrize('search, key', [
    (dict(lr='1e-4'), 'search.lr'),
    (dict(lr=[]), 'search.lr'),
    (dict(learning_rate=[1e-4]), 'search.learning_rate'),
    (dict(lr=[1e-4], budget=3), 'search.budget'),
    (dict(lr=[1e-4], holdout=1.5), 'search.holdout'),
    (dict(lr=[1e-4], score='sal/accuracy'), 'search.score'),
    (dict(lr=[1e-4], final='best'), 'search.final'),
])
def test_a_bad_search_is_one_error_naming_the_key(tmp_path, search, key):
    path = write_suite(tmp_path, **{**GOOD, 'search': search})
    with pytest.raises(SuiteError, match=f': {re.escape(key)}: '):
        load_suite(path)


def test_search_points_are_the_grid_or_a_seeded_draw_from_it():
    from adapterkit.engine.compare_search import search_points
    space = {'optim_wrapper.optimizer.lr': [1, 2, 3], 'model.adapter.rank': [4, 8]}
    grid = search_points(dict(space=space, budget='grid', seed=0))
    assert len(grid) == 6 and grid[1] == {'optim_wrapper.optimizer.lr': 1,
                                          'model.adapter.rank': 8}
    drawn = search_points(dict(space=space, budget=3, seed=5))
    assert len(drawn) == 3 and all(p in grid for p in drawn)
    assert drawn == search_points(dict(space=space, budget=3, seed=5))


def test_a_searched_member_runs_end_to_end_through_the_cli(tmp_path, capsys, one_thread):
    """LoRA searched over two learning rates on the held-out part, then retrained with the
    best one; full fine-tuning not searched. Δm against fixed references."""
    suite = write_suite(tmp_path, base=QUICKSTART, tasks=TASKS, options=TINY,
                        data=data(tmp_path / 'data', num_train=5),
                        references=dict(sal=50.0, normals=30.0),
                        members=dict(full=QUICKSTART, lora=dict(
                            config=LORA, search=dict(lr=[1e-4, 3e-3], holdout=0.4))))
    # holdout is the suite's: a member may not set it
    with pytest.raises(SuiteError, match='members.lora.search: the held-out split'):
        load_suite(suite)
    suite = write_suite(tmp_path, base=QUICKSTART, tasks=TASKS, options=TINY,
                        data=data(tmp_path / 'data', num_train=5),
                        references=dict(sal=50.0, normals=30.0), search=dict(holdout=0.4),
                        members=dict(full=QUICKSTART,
                                     lora=dict(config=LORA, search=dict(lr=[1e-4, 3e-3]))))
    work = tmp_path / 'work'
    assert main(['compare', suite, '--work-dir', str(work)]) == 0
    out = capsys.readouterr().out
    points = [json.loads((work / 'lora' / 'search' / f'point_{k}' / 'run.json').read_text())
              for k in range(2)]
    scores = [delta_m({t: p['value'] for t, p in r['primary'].items()},
                      dict(sal=50.0, normals=30.0), dict(sal=True, normals=False))
              for r in points]
    best = max(range(2), key=lambda k: (scores[k], -k))
    lr = [1e-4, 3e-3][best]
    assert f'search lora: best point {best} (lr={lr!r})' in out
    final = json.loads((work / 'lora' / 'seed_0' / 'run.json').read_text())
    assert final['status'] == 'ok' and final['search']['chosen'] == best
    assert [p['score'] for p in final['search']['points']] == pytest.approx(scores)
    assert 'optim_wrapper.optimizer.lr' in final['config_diff']
    from mmengine.config import Config
    assert Config.fromfile(str(work / 'lora' / 'seed_0' / 'config.py')).optim_wrapper \
        .optimizer.lr == lr
    point = Config.fromfile(str(work / 'lora' / 'search' / 'point_0' / 'config.py'))
    assert point.val_dataloader.dataset.part == 'heldout'  # scored on the held-out part
    assert not (work / 'full' / 'search').exists()  # full is not searched
    markdown = (work / 'results.md').read_text()
    assert '## Search' in markdown and '| lr ∈ [0.0001, 0.003]: chose lr=' in markdown
    assert (work / 'search.png').is_file()


# ------------------------------------------------------------------ executors
THREE = dict(full=QUICKSTART, bitfit=dict(adapter=dict(type='BitFit')), lora=LORA)
FOUR_ITERS = {**TINY, 'train_cfg.max_iters': 4, 'train_cfg.val_interval': 4}


def three_member_suite(folder, **keys):
    return write_suite(folder, base=QUICKSTART, tasks=TASKS, options=FOUR_ITERS,
                       data=data(folder / 'data'), references=dict(sal=50.0, normals=30.0),
                       members=THREE, **keys)


def test_two_local_workers_run_three_members_and_a_killed_one_resumes_alone(
        tmp_path, capsys):
    """Two workers take full and bitfit, then lora; lora's worker is killed (kill -9) once
    it has a complete checkpoint. A rerun resumes lora and redoes nothing else."""
    import signal
    import threading
    import time

    from adapterkit.engine.compare import checkpoint_complete
    suite = three_member_suite(tmp_path, executor=dict(type='local', max_parallel=2))
    work = tmp_path / 'work'
    victim = work / 'lora' / 'seed_0'
    reports = []
    compare = threading.Thread(target=lambda: reports.append(run_compare(suite, str(work))))
    compare.start()
    killed = False
    while compare.is_alive() and not killed:
        job = json.loads((victim / 'job.json').read_text()) if (victim / 'job.json').is_file() \
            else {}
        if 'pid' in job and checkpoint_complete(str(victim / 'iter_1.pth')):
            os.kill(job['pid'], signal.SIGKILL)
            killed = True
        time.sleep(0.02)
    compare.join()
    out = capsys.readouterr().out
    assert killed
    # two at once, each on half the cores
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert out.index('bitfit seed 0: started') < out.index(': done')
    assert 'full seed 0: started (worker pid ' in out and f'{threads} thread(s)' in out
    rows = {r['method']: r for r in reports[0]['methods']}
    assert rows['full']['seeds'] == [0] and rows['bitfit']['seeds'] == [0]
    assert rows['lora']['seeds'] == [] and 'killed by signal 9' in rows['lora']['notes'][0]

    done = [work / name / 'seed_0' / f for name in ('full', 'bitfit')
            for f in ('iter_4.pth', 'metrics.json', 'run.json', 'worker.log')]
    before = [os.stat(f).st_mtime_ns for f in done]
    # the rerun plans the same runs whatever executor runs them: here this process
    again = run_compare(suite, str(work), executor=dict(type='serial'))
    out = capsys.readouterr().out
    assert out.count('finished earlier: reused') == 2 and 'resuming from iter_' in out
    assert [os.stat(f).st_mtime_ns for f in done] == before  # nothing finished is redone
    assert [r['seeds'] for r in again['methods']] == [[0], [0], [0]]
    assert json.loads((victim / 'run.json').read_text())['train']['iters'] == 4


def test_slurm_jobs_through_submitits_local_executor_run_three_members(tmp_path, capsys):
    suite = three_member_suite(tmp_path, executor=dict(type='slurm', cluster='local',
                                                       time_min=10))
    work = tmp_path / 'work'
    assert main(['compare', suite, '--work-dir', str(work)]) == 0
    out = capsys.readouterr().out
    for name in THREE:
        run_dir = work / name / 'seed_0'
        job = json.loads((run_dir / 'job.json').read_text())
        record = json.loads((run_dir / 'run.json').read_text())
        assert f'{name} seed 0: submitted job {job["job_id"]}' in out
        assert record['status'] == 'ok' and record['attempt'] == job['attempt']
        # the job's own log (submitit's folder) holds the run's progress
        log = (work / 'slurm' / f'{job["job_id"]}_0_log.out').read_text()
        assert 'iter 4/4' in log and 'done: ' in log
    # a rerun collects the finished jobs instead of submitting them again
    assert main(['compare', suite, '--work-dir', str(work)]) == 0
    out = capsys.readouterr().out
    assert out.count('finished earlier: reused') == 3 and 'submitted' not in out
