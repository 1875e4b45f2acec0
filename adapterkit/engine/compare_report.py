"""The report of ``adapterkit compare``: one row per method, aggregated over seeds.

Built from the runs' ``run.json`` records (``compare.execute``) and written atomically to
the work dir: ``results.json`` (everything, the runs included), ``results.csv`` (one row per
method), ``results.md`` (the table, the references, the config diff), ``pareto.png``
(trainable parameters, log axis, vs Δm; the Pareto front marked; each method named beside
the plot with a line to its point) and ``tasks.png`` (every task's primary metric per
method, bars from zero, values printed).

Per method and seed: every task's primary metric, Δm against the references (the mean over
seeds of the single-task runs, or the suite's fixed values), trainable parameters (and as a
% of full fine-tuning of the multi-task model), training wall time, throughput and peak
memory, and inference latency. Over seeds: mean and sample standard deviation (none for a
single seed); latency instead as the median and quartiles of every timed forward pass of
every seed (a pass is a draw of the same distribution whatever the seed, and a busy machine
makes single passes several times slower). The single-task references form one row: the T
models together (parameters, time and latency summed, the latter pass by pass; each task's
metric from its own model).
"""
import csv
import io
import math
import os
import os.path as osp
import statistics
from typing import Dict, List, Optional, Sequence

from ..errors import AdapterkitError
from ..evaluation import delta_m
from ..fileio import atomic_write, write_json, write_text
from .bench import quartiles
from .compare_suite import PRETRAIN, SEARCH, SEARCH_REFERENCE, SINGLE_TASK

REPORT_FILES = ('results.json', 'results.csv', 'results.md', 'pareto.png', 'tasks.png')
# Written when the suite has them: published numbers, searches.
EXTRA_FILES = ('published.png', 'search.png')
CONFIDENCE = 0.95


def mean_std(values: Sequence[float]) -> dict:
    """``{'mean', 'std', 'n', 'ci95'}`` of the values; std is the sample standard
    deviation, ci95 the 95% confidence interval of the mean, ``[low, high]`` = mean ± t ·
    std / √n with Student's t of n - 1 degrees of freedom (both None for fewer than two
    values); mean is None for none."""
    values = [v for v in values if v is not None]
    n = len(values)
    mean = statistics.mean(values) if values else None
    std = statistics.stdev(values) if n > 1 else None
    ci = None
    if std is not None:
        half = t_quantile(n - 1) * std / math.sqrt(n)
        ci = [mean - half, mean + half]
    return dict(mean=mean, std=std, n=n, ci95=ci)


def t_quantile(df: int) -> float:
    """Student's t at (1 + CONFIDENCE) / 2 with ``df`` degrees of freedom (4.303 for 2)."""
    from scipy import stats  # here: 0.4 s to import, and every training run imports this module
    return float(stats.t.ppf((1 + CONFIDENCE) / 2, df))


def paired(member: Dict[int, float], other: Dict[int, float]) -> dict:
    """The per-seed differences ``member - other`` over the seeds both have, their
    ``mean_std`` and ``contains_zero`` (the 95% interval includes 0: no difference at that
    level; None with fewer than two seeds)."""
    seeds = sorted(s for s in set(member) & set(other)
                   if member[s] is not None and other[s] is not None)
    diffs = [member[s] - other[s] for s in seeds]
    summary = mean_std(diffs)
    ci = summary['ci95']
    return dict(summary, seeds=seeds, diffs=diffs,
                contains_zero=None if ci is None else ci[0] <= 0 <= ci[1])


def duration_text(seconds: float) -> str:
    """'m:ss'."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f'{minutes}:{seconds:02d}'


def median_quartiles(values: Sequence[float]) -> dict:
    """``{'median', 'q1', 'q3', 'n'}`` of the values (None but n for none)."""
    values = [v for v in values if v is not None]
    q1, median, q3 = quartiles(values) if values else (None, None, None)
    return dict(median=median, q1=q1, q3=q3, n=len(values))


def pareto_front(points: Sequence[tuple]) -> List[int]:
    """Indices of the (params, Δm) points no other point beats: none has at most as many
    parameters and at least the same Δm, with one of the two strictly better."""
    return [i for i, (x, y) in enumerate(points)
            if not any(x2 <= x and y2 >= y and (x2 < x or y2 > y) for x2, y2 in points)]


# ------------------------------------------------------------------ aggregation
def build_report(records: Sequence[dict], compare_to: Optional[str] = None) -> dict:
    """Aggregate run records (any order, any seeds) into the report dict; ``compare_to``
    (default: the suite's) names the member the others are paired with."""
    runs = [r for r in records if r['kind'] not in (PRETRAIN, SEARCH, SEARCH_REFERENCE)]
    if not runs:
        raise AdapterkitError('compare: no runs to report')
    ok = [r for r in runs if r['status'] == 'ok']
    members = [r for r in runs if r['kind'] == 'member']
    tasks = list((members or runs)[0]['tasks'])
    if any(r['kind'] == 'reference' for r in runs):
        tasks = list(dict.fromkeys(tasks + [t for r in runs if r['kind'] == 'reference'
                                            for t in r['tasks']]))
    info = {}  # task -> primary metric and its direction
    for record in ok:
        for task, primary in record['primary'].items():
            info.setdefault(task, dict(metric=primary['metric'],
                                       higher_is_better=primary['higher_is_better']))
    references = _references(runs, tasks, info)
    full = next((r['full_params'] for r in ok if r['kind'] == 'member'), None)

    rows = []
    reference_runs = [r for r in runs if r['kind'] == 'reference']
    if reference_runs:
        rows.append(_reference_row(reference_runs, tasks, references, info, full))
    order = sorted({(r['order'], r['name']) for r in members})
    for _, name in order:
        rows.append(_member_row([r for r in members if r['name'] == name], tasks,
                                references, info, full))
    suite = runs[0]
    compare_to = compare_to or next((r.get('compare_to') for r in runs
                                     if r.get('compare_to')), None)
    return dict(suite=suite['suite'], base=suite['base'], tasks=tasks,
                seeds=sorted({r['seed'] for r in runs}), references=references,
                full_params=full, methods=rows, compare_to=compare_to,
                paired=_paired_rows(rows, tasks, compare_to),
                published={r['name']: r['published'] for r in members if r.get('published')},
                searches=_searches(members),
                pretrain=next((r for r in records if r['kind'] == PRETRAIN), None),
                runs=sorted(records, key=lambda r: (r['seed'], r['order'],
                                                    (r.get('point') or {}).get('index', -1))))


def _paired_rows(rows, tasks, compare_to) -> List[dict]:
    """Every other member against ``compare_to``, seed by seed: Δm and each task's metric."""
    against = next((r for r in rows if r['method'] == compare_to), None)
    if against is None:
        return []

    def per_seed(row, key):
        return {s['seed']: (s['delta_m'] if key is None else s['metrics'].get(key))
                for s in row['samples']}
    return [dict(method=row['method'], delta_m=paired(per_seed(row, None),
                                                      per_seed(against, None)),
                 metrics={t: paired(per_seed(row, t), per_seed(against, t)) for t in tasks})
            for row in rows if row['kind'] == 'member' and row is not against]


def _searches(members) -> Dict[str, dict]:
    """Each searched member's search (settings, points with their held-out scores, the
    chosen point), from its reported runs' records."""
    found = {}
    for record in sorted(members, key=lambda r: r['seed']):
        search = record.get('search')
        if search and 'points' in search:
            found.setdefault(record['name'], search)
    return found


def _references(runs, tasks, info) -> Dict[str, dict]:
    """{task: value, metric, direction, source} for the tasks that have a reference."""
    fixed = [r['references'] for r in runs if isinstance(r.get('references'), dict)]
    references = {}
    for task in tasks:
        if fixed:
            value, source = fixed[0].get(task), 'suite'
        else:
            values = [r['primary'][task]['value'] for r in runs
                      if r['kind'] == 'reference' and r['status'] == 'ok' and r['tasks'] == [task]
                      and r['primary'][task]['value'] is not None]  # null: no valid pixel
            value = statistics.mean(values) if values else None
            source = (f'single-task runs, mean over {len(values)} seed'
                      + ('s' if len(values) != 1 else ''))
        if value and task in info:  # Δm divides by the reference: 0 cannot serve
            references[task] = dict(value=value, source=source, **info[task])
    return references


def _delta_m(metrics: dict, references: dict) -> Optional[float]:
    if not metrics or any(t not in references or v is None for t, v in metrics.items()):
        return None
    return delta_m(metrics, {t: references[t]['value'] for t in metrics},
                   {t: references[t]['higher_is_better'] for t in metrics})


def _sample(record: dict, references: dict) -> dict:
    """The figures of one successful member run."""
    metrics = {t: p['value'] for t, p in record['primary'].items()}
    train = record.get('train') or {}
    return dict(metrics=metrics, delta_m=_delta_m(metrics, references),
                trainable=record['params']['trainable'],
                train_time_s=train.get('time_s'),
                train_images_per_s=_rate(train.get('images'), train.get('time_s')),
                peak_memory_mb=train.get('peak_memory_mb'),
                latency_ms=_passes(record), merged=record['inference']['merged'])


def _passes(record: dict) -> List[float]:
    """A run's timed forward passes in ms (one median, for records written before they
    were kept)."""
    inference = record['inference']
    return inference.get('latency_ms_all') or [inference['latency_ms']]


def _rate(images, seconds):
    return images / seconds if images and seconds else None


def _member_row(records, tasks, references, info, full) -> dict:
    samples = {r['seed']: _sample(r, references) for r in records if r['status'] == 'ok'}
    first = records[0]
    return _row(first['name'], 'member', samples, records, tasks, info, full,
                adapter=first['adapter'], trained_tasks=first['tasks'])


def _reference_row(records, tasks, references, info, full) -> dict:
    """The single-task models of each seed together, as one method."""
    samples = {}
    for seed in sorted({r['seed'] for r in records}):
        runs = {r['tasks'][0]: r for r in records if r['seed'] == seed}
        if any(runs.get(t, {}).get('status') != 'ok' for t in tasks):
            continue
        trains = [runs[t].get('train') or {} for t in tasks]
        time_s = sum(t.get('time_s') or 0 for t in trains) or None
        metrics = {t: runs[t]['primary'][t]['value'] for t in tasks}
        samples[seed] = dict(
            metrics=metrics, delta_m=_delta_m(metrics, references),
            trainable=sum(runs[t]['params']['trainable'] for t in tasks),
            train_time_s=time_s,
            train_images_per_s=_rate(sum(t.get('images') or 0 for t in trains), time_s),
            peak_memory_mb=max((t.get('peak_memory_mb') or 0 for t in trains), default=None),
            latency_ms=_summed_passes([_passes(runs[t]) for t in tasks]),
            merged=all(runs[t]['inference']['merged'] for t in tasks))
    name = f'{SINGLE_TASK} ({len(tasks)} models)'
    return _row(name, 'reference', samples, records, tasks, info, full,
                adapter=records[0]['adapter'], trained_tasks=['one per model'])


def _summed_passes(passes: List[List[float]]) -> List[float]:
    """The latency of T models run one after the other: their i-th passes summed (each
    model's passes are independent draws), or their medians summed where the counts
    differ."""
    if len({len(p) for p in passes}) == 1:
        return [sum(column) for column in zip(*passes)]
    return [sum(quartiles(p)[1] for p in passes)]


def _row(name, kind, samples, records, tasks, info, full, adapter, trained_tasks) -> dict:
    notes = [f'{r["name"] + " " if kind == "reference" else ""}seed {r["seed"]}: '
             f'{r.get("error") or r["status"]}' for r in records if r['status'] != 'ok']
    values = list(samples.values())
    trainable = values[0]['trainable'] if values else None
    return dict(
        method=name, kind=kind, seeds=sorted(samples), notes=notes, adapter=adapter,
        samples=[dict(seed=seed, delta_m=v['delta_m'], metrics=v['metrics'])
                 for seed, v in sorted(samples.items())],
        search=next((r['search'] for r in records if r.get('search')), None),
        trained_tasks=trained_tasks,
        config_diff=sorted({k for r in records for k in r.get('config_diff', [])}),
        trainable=trainable,
        trainable_percent_of_full=(100.0 * trainable / full if trainable and full else None),
        metrics={t: dict(info.get(t, {}), **mean_std([v['metrics'].get(t) for v in values]))
                 for t in tasks},
        **{key: mean_std([v[key] for v in values])
           for key in ('delta_m', 'train_time_s', 'train_images_per_s', 'peak_memory_mb')},
        latency_ms=median_quartiles([ms for v in values for ms in v['latency_ms']]),
        latency_merged=all(v['merged'] for v in values) if values else None)


# ------------------------------------------------------------------ files
def write_report(records: Sequence[dict], out_dir: str,
                 compare_to: Optional[str] = None) -> dict:
    """Build the report and write its files to ``out_dir`` (each atomically): the five of
    REPORT_FILES, and those of EXTRA_FILES that the suite has data for."""
    report = build_report(records, compare_to)
    os.makedirs(out_dir, exist_ok=True)
    write_json(osp.join(out_dir, 'results.json'), report)
    write_text(osp.join(out_dir, 'results.csv'), to_csv(report))
    write_text(osp.join(out_dir, 'results.md'), to_markdown(report))
    _save(pareto_figure(report), osp.join(out_dir, 'pareto.png'))
    _save(tasks_figure(report), osp.join(out_dir, 'tasks.png'))
    if report['published']:
        _save(published_figure(report), osp.join(out_dir, 'published.png'))
    if report['searches']:
        _save(search_figure(report), osp.join(out_dir, 'search.png'))
    return report


def to_csv(report: dict) -> str:
    columns = ['method', 'kind', 'seeds', 'trainable', 'trainable_percent_of_full']
    for task in report['tasks']:
        metric = report['methods'][0]['metrics'][task].get('metric', 'primary')
        columns += [f'{task}/{metric}', f'{task}/{metric}_std']
    for key in ('delta_m', 'train_time_s', 'train_images_per_s', 'peak_memory_mb'):
        columns += [key, f'{key}_std']
    columns += ['latency_ms', 'latency_ms_q1', 'latency_ms_q3', 'latency_passes',
                'latency_merged', 'notes']
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(columns)
    for row in report['methods']:
        cells = [row['method'], row['kind'], ' '.join(map(str, row['seeds'])),
                 row['trainable'], _round(row['trainable_percent_of_full'])]
        for task in report['tasks']:
            cells += [_round(row['metrics'][task]['mean']), _round(row['metrics'][task]['std'])]
        for key in ('delta_m', 'train_time_s', 'train_images_per_s', 'peak_memory_mb'):
            cells += [_round(row[key]['mean']), _round(row[key]['std'])]
        latency = row['latency_ms']
        cells += [_round(latency['median']), _round(latency['q1']), _round(latency['q3']),
                  latency['n'], row['latency_merged'], '; '.join(row['notes'])]
        writer.writerow(['' if c is None else c for c in cells])
    return out.getvalue()


def _round(value, digits=4):
    return None if value is None else round(value, digits)


def format_table(report: dict) -> str:
    """The methods table, as aligned Markdown (readable printed and rendered)."""
    head = ['method', 'trainable', '% of full']
    for task in report['tasks']:
        first = report['methods'][0]['metrics'][task]
        arrow = '' if 'higher_is_better' not in first else (
            ' ↑' if first['higher_is_better'] else ' ↓')
        head.append(f'{task} {first.get("metric", "")}{arrow}')
    head += ['Δm % ↑', 'train time', 'train img/s', 'peak MB', 'latency ms (IQR)', 'note']
    lines = []
    for row in report['methods']:
        latency = _latency(row['latency_ms'])
        if row['latency_merged'] is False and row['seeds']:
            latency += '*'
        lines.append([
            row['method'], _count(row['trainable']),
            _percent(row['trainable_percent_of_full']),
            *[_number(row['metrics'][t]) for t in report['tasks']],
            _number(row['delta_m'], signed=True),
            _time(row['train_time_s']['mean']),
            _number(row['train_images_per_s'], 1, spread=False),
            _number(row['peak_memory_mb'], 0, spread=False), latency,
            '; '.join(_short(note) for note in row['notes'])])
    widths = [max(len(str(x)) for x in column) for column in zip(head, *lines)]

    def line(cells):
        return '| ' + ' | '.join(str(c).ljust(w) for c, w in zip(cells, widths)) + ' |'
    rule = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    return '\n'.join([line(head), rule] + [line(cells) for cells in lines])


def _short(note: str, limit: int = 100) -> str:
    """A note's first sentence, at most ``limit`` characters (results.json has it all)."""
    note = note.split('. ')[0]
    return note if len(note) <= limit else note[:limit - 1] + '…'


def _number(value, digits=2, signed=False, spread=True) -> str:
    """'12.34 ± 0.56' from a mean_std dict (or a plain number); '—' when missing."""
    mean = value['mean'] if isinstance(value, dict) else value
    if mean is None:
        return '—'
    text = f'{mean:+.{digits}f}' if signed else f'{mean:.{digits}f}'
    std = value.get('std') if isinstance(value, dict) and spread else None
    return f'{text} ± {std:.{digits}f}' if std is not None else text


def _latency(value: dict) -> str:
    """'13.20 (12.91-14.05)': the median and, in parentheses, the quartiles."""
    if value['median'] is None:
        return '—'
    return f'{value["median"]:.2f} ({value["q1"]:.2f}-{value["q3"]:.2f})'


def _percent(value) -> str:
    return '—' if value is None else f'{value:.1f}%'


def _count(n) -> str:
    if n is None:
        return '—'
    for unit, size in (('M', 1e6), ('K', 1e3)):
        if n >= size:
            return f'{n / size:.2f}{unit}'
    return str(n)


def _time(seconds) -> str:
    return '—' if seconds is None else duration_text(seconds)


def to_markdown(report: dict) -> str:
    seeds = report['seeds']
    spread = (f'mean ± sample std over {len(seeds)} seeds ({", ".join(map(str, seeds))})'
              if len(seeds) > 1 else f'one seed ({seeds[0]})')
    parts = [f'# Comparison: {report["suite"]}', '',
             f'Every run is `{_shown(report["base"])}` with the suite\'s shared settings and '
             f'its own `model.adapter` (see the config diff below); {spread}. Metrics are '
             'the final validation of each run; Δm is against the references below.', '',
             format_table(report), '',
             '`trainable`: trainable parameters (heads included); `% of full`: of the '
             f'multi-task model\'s full fine-tuning ({_count(report["full_params"])}). '
             '`train time`: wall time of the training iterations (data loading and '
             'checkpoints included, validation not); `peak MB`: peak memory while training '
             '(CUDA: allocated tensors; CPU: the process\'s peak resident set, which '
             'includes the runtime); `latency ms`: the median forward pass at batch 1 with '
             'the adapters merged into the weights (* : the strategy cannot merge), in '
             f'parentheses its first and third quartiles, over {_passes_text(report)} timed '
             'passes after warm-up (all seeds together).', '']
    parts += ['## References', '', '| task | metric | value | source |', '|---|---|---|---|']
    for task, ref in report['references'].items():
        arrow = 'higher' if ref['higher_is_better'] else 'lower'
        parts.append(f'| {task} | {ref["metric"]} ({arrow} is better) | {ref["value"]:.2f} '
                     f'| {ref["source"]} |')
    missing = [t for t in report['tasks'] if t not in report['references']]
    if missing:
        parts.append(f'\nNo reference (or one of 0) for {", ".join(missing)}: Δm is not '
                     'computed.')
    parts += confidence_section(report) + paired_section(report)
    parts += published_section(report) + search_section(report)
    parts += ['', '## Config diff', '',
              'What each method changes in the common config. Checked for every run: no '
              'other key differs (a single-task reference also keeps only its task; a '
              'searched member also its searched keys, set to the chosen point).', '',
              '| method | model.adapter | tasks | search |', '|---|---|---|---|']
    for row in report['methods']:
        adapter = adapter_text(row['adapter']).replace('|', '\\|')  # not a cell border
        parts.append(f'| {row["method"]} | `{adapter}` | '
                     f'{", ".join(row["trained_tasks"])} | {search_text(row["search"])} |')
    pretrain = report.get('pretrain')
    if pretrain:
        train = pretrain.get('train') or {}
        parts += ['', '## Pretraining', '',
                  f'Every run starts from the backbone of a pretraining run (full fine-tuning '
                  f'on other data, {train.get("iters", "?")} iterations, '
                  f'{_time(train.get("time_s"))}): `pretrain/backbone.safetensors`.']
    parts += ['', '![Δm vs trainable parameters](pareto.png)', '',
              '![per-task metrics](tasks.png)', '']
    if report['published']:
        parts += ['![published vs measured](published.png)', '']
    if report['searches']:
        parts += ['![held-out search scores](search.png)', '']
    return '\n'.join(parts)


def _passes_text(report: dict) -> str:
    counts = sorted({row['latency_ms']['n'] for row in report['methods'] if row['seeds']})
    return ' or '.join(map(str, counts)) or 'no'


def _interval(stat: dict, digits: int = 2, signed: bool = False) -> str:
    """'12.34 [10.01, 14.67]' (mean and 95% interval), '12.34' with one value, '—' none."""
    if stat['mean'] is None:
        return '—'
    sign = '+' if signed else ''
    text = f'{stat["mean"]:{sign}.{digits}f}'
    if stat.get('ci95'):
        low, high = stat['ci95']
        text += f' [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]'
    return text


def confidence_section(report: dict) -> List[str]:
    """Mean and 95% confidence interval over seeds (Student's t) of Δm and every metric."""
    if len(report['seeds']) < 2:
        return []
    tasks = report['tasks']
    lines = ['', '## Confidence over seeds', '',
             f'Mean and 95% confidence interval of the mean over the seeds, mean ± t · std / '
             f'√n with Student\'s t of n - 1 degrees of freedom (t = '
             f'{t_quantile(len(report["seeds"]) - 1):.3f} for {len(report["seeds"])} seeds).',
             '', '| method | seeds | Δm % | ' + ' | '.join(tasks) + ' |',
             '|---|---|---|' + '---|' * len(tasks)]
    for row in report['methods']:
        lines.append(f'| {row["method"]} | {len(row["seeds"])} | '
                     f'{_interval(row["delta_m"], signed=True)} | '
                     + ' | '.join(_interval(row['metrics'][t]) for t in tasks) + ' |')
    return lines


def paired_section(report: dict) -> List[str]:
    """Each member minus the ``compare_to`` one, seed by seed."""
    if not report['paired']:
        return []
    tasks, other = report['tasks'], report['compare_to']
    lines = ['', f'## Paired differences against {other}', '',
             f'Per seed, each member minus {other} (same seed: same data order and '
             'initialisation of everything the two share); mean and 95% interval of the '
             'differences. *n.s.*: the interval contains 0, so this comparison does not '
             'tell the two apart at that level.', '',
             '| method | seeds | Δm % | ' + ' | '.join(tasks) + ' |',
             '|---|---|---|' + '---|' * len(tasks)]

    def cell(stat, signed=True):
        mark = ' *n.s.*' if stat['contains_zero'] else ''
        return _interval(stat, signed=signed) + mark
    for row in report['paired']:
        lines.append(f'| {row["method"]} − {other} | {len(row["delta_m"]["seeds"])} | '
                     f'{cell(row["delta_m"])} | '
                     + ' | '.join(cell(row['metrics'][t]) for t in tasks) + ' |')
    return lines


def published_section(report: dict) -> List[str]:
    """Each member's published numbers beside the measured ones."""
    if not report['published']:
        return []
    tasks = report['tasks']
    lines = ['', '## Published vs measured', '',
             'The suite\'s published numbers (`published`) beside this run\'s (mean over '
             'seeds), as *published / measured*.', '',
             '| method | ' + ' | '.join(tasks) + ' | Δm % | trainable |',
             '|---|' + '---|' * (len(tasks) + 2)]
    rows = {row['method']: row for row in report['methods']}
    for name, published in report['published'].items():
        row = rows.get(name)
        if row is None:
            continue
        cells = [_pair(published.get(t), row['metrics'][t]['mean']) for t in tasks]
        cells.append(_pair(published.get('delta_m'), row['delta_m']['mean'], signed=True))
        cells.append(f'{_count(published.get("trainable"))} / {_count(row["trainable"])}')
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return lines


def _pair(published, measured, signed=False) -> str:
    return f'{_number(published, signed=signed)} / {_number(measured, signed=signed)}'


def search_text(search: Optional[dict]) -> str:
    """The config-diff cell of a searched member: its space and its choice."""
    if not search:
        return '—'
    space = '; '.join(f'{k} ∈ {v}' for k, v in search['space'].items())
    chosen = search.get('chosen')
    if chosen is None:
        return f'{space} (no choice yet)'
    values = search['points'][chosen]['values']
    return f'{space}: chose ' + ', '.join(f'{k}={v!r}' for k, v in values.items())


def search_section(report: dict) -> List[str]:
    """Every searched member's points and held-out scores, the chosen one marked."""
    if not report['searches']:
        return []
    lines = ['', '## Search', '',
             'Every point trained on the train list less the held-out part and was scored '
             'on that part (never on val); the best score (✓) was then used for the '
             'reported runs.']
    for name, search in report['searches'].items():
        score = 'Δm %' if search['score'] == 'delta_m' else search['score']
        final = ('retrained on the whole train list' if search['final'] == 'retrain'
                 else 'reused as it is')
        lines += ['', f'**{name}**: {search["budget"]} over '
                      + ', '.join(f'{k} ∈ {v}' for k, v in search['space'].items())
                      + f'; held out {search["holdout"]:.0%} of the train list (seed '
                      f'{search["seed"]}); score {score}; the chosen point {final}.',
                  '', f'| point | values | held-out {score} | |', '|---|---|---|---|']
        for point in search['points']:
            value = point['score']
            if value is not None and search['score'] != 'delta_m' \
                    and not search['higher_is_better']:
                value = -value  # shown as the metric, not as the signed score
            sign = '+' if search['score'] == 'delta_m' else ''
            shown = '—' if value is None else f'{value:{sign}.2f}'
            if point['status'] != 'ok':
                shown = f'{point["status"]}: {_short(point.get("error") or "", 60)}'
            mark = '✓' if point['index'] == search.get('chosen') else ''
            values = ', '.join(f'{k}={v!r}' for k, v in point['values'].items())
            lines.append(f'| {point["index"]} | {values} | {shown} | {mark} |')
    return lines


def _shown(path: str) -> str:
    """A path relative to the working directory when it lies below it."""
    relative = osp.relpath(path) if osp.isabs(path) else path
    return path if relative.startswith('..') else relative


def adapter_text(adapter) -> str:
    """``LoRA(rank=8, targets='...')`` for a strategy dict; ' + ' joins a list."""
    if adapter is None:
        return '—'
    if isinstance(adapter, (list, tuple)):
        return ' + '.join(adapter_text(a) for a in adapter)
    options = ', '.join(f'{k}={v!r}' for k, v in adapter.items() if k != 'type')
    return f'{adapter.get("type", "?")}({options})'


# ------------------------------------------------------------------ figures
LABEL_GAP = 0.075  # the least distance between two labels of pareto.png, in axes heights


def pareto_figure(report: dict):
    """Δm against trainable parameters (log axis), the Pareto front in red. Each method is
    named in a column right of the plot, in the order of its point's height and spaced so
    that no two names overlap, with a line to its point: methods whose points nearly
    coincide stay readable, and no name sits beside another method's point."""
    from matplotlib.figure import Figure
    rows = [r for r in report['methods']
            if r['delta_m']['mean'] is not None and r['trainable']]
    fig = Figure(figsize=(8.5, 4.8), layout='constrained')
    ax = fig.subplots()
    if not rows:
        ax.text(0.5, 0.5, 'no Δm: no references for these tasks', ha='center',
                transform=ax.transAxes)
        return fig
    points = [(r['trainable'], r['delta_m']['mean']) for r in rows]
    front = pareto_front(points)
    for i, ((x, y), row) in enumerate(zip(points, rows)):
        ax.errorbar(x, y, yerr=row['delta_m']['std'], fmt='o', capsize=3,
                    color='C3' if i in front else 'C0')
    line = sorted(points[i] for i in front)
    ax.plot([p[0] for p in line], [p[1] for p in line], '--', color='C3',
            label='Pareto front')
    ax.axhline(0.0, color='grey', lw=0.8)
    ax.set_xscale('log')
    ax.set_xlabel('trainable parameters (log scale)')
    ax.set_ylabel('Δm (%) vs the references')
    ax.set_title(f'{report["suite"]}: Δm vs trainable parameters')
    ax.legend(loc='best', fontsize=8)
    _label_points(ax, [r['method'] for r in rows], points)
    return fig


def _label_points(ax, names: List[str], points: List[tuple]) -> None:
    """Each name right of the axes at about its point's height, joined to it by a line."""
    low, high = ax.get_ylim()  # the autoscaled range, kept from here on
    ax.set_ylim(low, high)
    order = sorted(range(len(points)), key=lambda i: points[i][1])
    heights = _spread([(points[i][1] - low) / (high - low) for i in order],
                      min(LABEL_GAP, 1 / len(points)))
    for i, height in zip(order, heights):
        ax.annotate(names[i], points[i], xytext=(1.03, height), textcoords='axes fraction',
                    va='center', fontsize=8, annotation_clip=False,
                    arrowprops=dict(arrowstyle='-', color='0.55', lw=0.6, shrinkA=1,
                                    shrinkB=4))


def _spread(heights: List[float], gap: float) -> List[float]:
    """Ascending heights in [0, 1] moved apart to at least ``gap`` (at most 1 / count),
    each as little as it can, all kept in [0, 1]."""
    out = list(heights)
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + gap)
    if out and out[-1] > 1:
        out[-1] = 1.0
        for i in range(len(out) - 2, -1, -1):
            out[i] = min(out[i], out[i + 1] - gap)
    return out


def tasks_figure(report: dict):
    """Every task's primary metric per method as bars from zero, so that their lengths
    compare as the values do (an axis starting near the values would blow a one-point gap
    up to the panel's width), the value printed at each bar, the reference dashed; error
    bars (± the sample std) only where a method has several seeds."""
    from matplotlib.figure import Figure
    rows = [r for r in report['methods'] if r['seeds']]
    tasks = report['tasks']
    fig = Figure(figsize=(4.2 * len(tasks), 1.0 + 0.35 * max(len(rows), 1)),
                 layout='constrained')
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    spread = False
    for ax, task in zip(axes, tasks):
        stats = [r['metrics'][task] for r in rows]
        spread |= _metric_bars(ax, rows, stats, report['references'].get(task))
        ax.set_yticks(range(len(rows)), [r['method'] for r in rows] if ax is axes[0]
                      else [''] * len(rows), fontsize=8)
        ax.invert_yaxis()
        first = stats[0] if stats else {}
        better = 'higher' if first.get('higher_is_better', True) else 'lower'
        ax.set_title(f'{task} {first.get("metric", "")} ({better} is better)', fontsize=9)
    seeds = len(report['seeds'])
    note = f'; error bars: ± std over {seeds} seeds' if spread else ''
    fig.suptitle(f'{report["suite"]}: primary metric per method (bars from 0; dashed: the '
                 f'reference{note})', fontsize=10)
    return fig


def _metric_bars(ax, rows, stats, reference) -> bool:
    """One panel of tasks.png; answers whether it drew error bars."""
    means = [s['mean'] for s in stats]
    ax.barh(range(len(rows)), [m or 0 for m in means], height=0.6,
            color=['C7' if r['kind'] == 'reference' else 'C0' for r in rows])
    ends = []
    for y, (mean, stat) in enumerate(zip(means, stats)):
        if mean is None:
            continue
        if stat['std'] is not None:
            ax.errorbar(mean, y, xerr=stat['std'], fmt='none', capsize=3, color='k', lw=0.8)
        end = mean + (stat['std'] or 0)
        ax.text(end, y, f' {mean:.2f}', va='center', fontsize=7)
        ends.append(end)
    if reference:
        ax.axvline(reference['value'], color='C3', ls='--', lw=1)
        ends.append(reference['value'])
    ax.set_xlim(0, 1.25 * max(ends, default=1) or 1)  # room for the printed values
    ax.grid(axis='x', alpha=0.3)
    return any(s['std'] is not None for s in stats)


def published_figure(report: dict):
    """Per task (and Δm): each member's published value (open circle) and measured mean
    (dot, with the 95% interval over seeds), joined by a line."""
    from matplotlib.figure import Figure
    rows = {row['method']: row for row in report['methods']}
    names = [n for n in report['published'] if n in rows]
    keys = report['tasks'] + ['delta_m']
    fig = Figure(figsize=(3.4 * len(keys), 1.2 + 0.4 * max(len(names), 1)),
                 layout='constrained')
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        for y, name in enumerate(names):
            stat = (rows[name]['delta_m'] if key == 'delta_m'
                    else rows[name]['metrics'][key])
            published, measured = report['published'][name].get(key), stat['mean']
            if published is not None and measured is not None:
                ax.plot([published, measured], [y, y], color='C7', lw=1)
            if published is not None:
                ax.plot(published, y, 'o', mfc='none', color='C1',
                        label='published' if y == 0 else None)
            if measured is not None:
                ci = stat.get('ci95')
                xerr = None if not ci else [[measured - ci[0]], [ci[1] - measured]]
                ax.errorbar(measured, y, xerr=xerr, fmt='o', color='C0', capsize=3,
                            label='measured' if y == 0 else None)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [''] * len(names),
                      fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis='x', alpha=0.3)
        metric = report['references'].get(key, {}).get('metric', '')
        ax.set_title('Δm %' if key == 'delta_m' else f'{key} {metric}', fontsize=9)
    axes[0].legend(fontsize=7, loc='best')
    fig.suptitle(f'{report["suite"]}: published (open) vs measured (filled)', fontsize=10)
    return fig


def search_figure(report: dict):
    """Per searched member: the held-out score of every point, the chosen one in red; over
    the value itself (log axis where it spans a factor of 10) when one key was searched."""
    from matplotlib.figure import Figure
    searches = report['searches']
    fig = Figure(figsize=(3.6 * len(searches), 3.2), layout='constrained')
    axes = fig.subplots(1, len(searches), squeeze=False)[0]
    for ax, (name, search) in zip(axes, searches.items()):
        points = [p for p in search['points'] if p['score'] is not None]
        sign = 1 if search['score'] == 'delta_m' or search['higher_is_better'] else -1
        keys = list(search['space'])
        numeric = len(keys) == 1 and all(isinstance(v, (int, float))
                                         for v in search['space'][keys[0]])
        xs = [p['values'][keys[0]] if numeric else p['index'] for p in points]
        ys = [sign * p['score'] for p in points]
        ax.plot(xs, ys, 'o-', color='C0')
        for x, y, point in zip(xs, ys, points):
            if point['index'] == search.get('chosen'):
                ax.plot(x, y, 'o', color='C3', ms=9, label='chosen')
        if numeric and xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale('log')
        if numeric and xs:  # the searched values themselves, not a log axis' many ticks
            ax.set_xticks(sorted(set(xs)), [f'{v:g}' for v in sorted(set(xs))])
            ax.minorticks_off()
        ax.set_xlabel(keys[0] if numeric else 'point (see results.md)')
        ax.set_ylabel('held-out Δm %' if search['score'] == 'delta_m' else
                      f'held-out {search["score"]}')
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        if points:
            ax.legend(fontsize=7)
    fig.suptitle(f'{report["suite"]}: search on the held-out split', fontsize=10)
    return fig


def _save(fig, path: str) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=110))
