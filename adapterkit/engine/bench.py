"""``adapterkit bench``: step time, throughput and peak memory of a config's model.

The model is built from the config with random weights (``pretrained=None``) and fed random
images and targets, so no data or checkpoint is needed:

- ``train``: forward, the task losses, backward and an AdamW step on the trainable
  parameters (what one training iteration costs, without data loading);
- ``infer``: forward in eval mode under ``no_grad``; ``merged`` folds the adapters into the
  frozen weights first.

``amp`` runs both in the mixed precision of ``adapterkit train --amp`` (bf16 autocast on CPU
and recent GPUs; ``engine/optim.py``), through the same optim wrapper the Runner uses.

Time: the median wall time of ``iters`` steps after ``warmup`` untimed ones (on CUDA each
step is synchronised), with its spread: the first and third quartiles (``step_s_q1``,
``step_s_q3``) and every step (``step_s_all``). Memory: on CUDA,
``torch.cuda.max_memory_allocated`` over the timed steps; on CPU, the process's peak
resident set size (``VmHWM`` in /proc/self/status), reset before the timed steps where the
kernel allows it (/proc/self/clear_refs), so it is the peak of a steady-state step: weights,
optimizer state, activations and the torch runtime.
Python-level tracers (tracemalloc) do not see torch's allocations. On CPU the figures are
taken with glibc's allocator set as adapterkit's CPU runs set it (``cpu_malloc`` in the result,
see ``cpu_malloc.py``).
"""
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..errors import AdapterkitError, ConfigError
from .optim import amp_autocast, amp_dtype, amp_optim_wrapper

MODES = ('train', 'infer')


def random_targets(tasks: dict, batch: int, size: int, device) -> Dict[str, torch.Tensor]:
    """Targets in the format each task's loss takes (see ``tasks/base.py``)."""
    targets = {}
    for name, task in tasks.items():
        if task.label_kind == 'normals':
            targets[name] = F.normalize(torch.randn(batch, 3, size, size, device=device), dim=1)
        elif task.label_kind == 'depth':
            targets[name] = torch.rand(batch, 1, size, size, device=device) + 0.1
        else:
            targets[name] = torch.randint(0, max(task.num_outputs, 2), (batch, size, size),
                                          device=device)
    return targets


def bench(config: str, mode: str = 'train', batch: int = 2, img: Optional[int] = None,
          iters: int = 5, warmup: int = 1, merged: bool = False,
          threads: Optional[int] = None, tasks: Optional[List[str]] = None,
          cfg_options: Optional[dict] = None, amp: bool = False) -> dict:
    """Measure one config; returns the figures as a dict (see the module docstring)."""
    from ..config import build_model, load_config
    from .cpu_malloc import configure_cpu_malloc
    if mode not in MODES:
        raise ConfigError(f'mode must be one of {MODES}, got {mode!r}', option='mode')
    if merged and mode != 'infer':
        raise ConfigError('--merged is for --mode infer (merged weights cannot train)',
                          option='--merged')
    if batch < 1 or iters < 1 or warmup < 0:
        raise ConfigError('batch and iters must be at least 1, warmup at least 0', option='batch')
    if threads is not None:
        torch.set_num_threads(threads)

    cfg = load_config(config, cfg_options)
    backbone = cfg.model.backbone
    backbone.pretrained = None  # speed does not depend on the weights
    if img is not None:
        backbone.img_size = img
    if tasks:
        given = cfg.model.tasks
        cfg.model.tasks = {name: given.get(name, {}) if isinstance(given, dict) else {}
                           for name in tasks}
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    cpu_malloc = configure_cpu_malloc() if device.type == 'cpu' else None
    model = build_model(cfg).to(device)
    size = backbone.img_size if isinstance(backbone.img_size, int) else backbone.img_size[0]
    inputs = torch.randn(batch, 3, size, size, device=device)

    if mode == 'train':
        model.train()
        samples = dict(gt=random_targets(model.tasks, batch, size, device))
        step = training_step(model, inputs, samples, amp)
    else:
        model.eval()
        if merged:
            model.merge_adapters()

        def step():
            with torch.no_grad(), amp_autocast(device.type, amp):
                model(inputs, mode='tensor')

    figures = measure(step, iters, warmup, device)
    return dict(config=config, mode=mode, merged=merged, device=str(device),
                threads=torch.get_num_threads(), cpu_malloc=cpu_malloc, batch=batch, img=size,
                tasks=list(model.tasks),
                amp=str(amp_dtype(device.type)).removeprefix('torch.') if amp else None,
                iters=iters, warmup=warmup, images_per_s=round(batch / figures['step_s'], 3),
                **figures)


def training_step(model: torch.nn.Module, inputs: torch.Tensor, samples: dict,
                  amp: bool = False) -> Callable[[], None]:
    """One training iteration as the Runner runs it: forward and the task losses in the optim
    wrapper's context (autocast with ``amp``), then backward and AdamW on the trainable
    parameters."""
    from ..registry import OPTIM_WRAPPERS
    cfg = amp_optim_wrapper(dict(type='OptimWrapper'), inputs.device.type) if amp \
        else dict(type='OptimWrapper')
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    wrapper = OPTIM_WRAPPERS.build(dict(cfg, optimizer=optimizer))

    def step():
        with wrapper.optim_context(model):
            losses = model(inputs, samples, mode='loss')
        wrapper.update_params(sum(losses.values()))
    return step


def quartiles(values: List[float]) -> Tuple[float, float, float]:
    """(first quartile, median, third quartile) of the values (linear interpolation between
    order statistics; all three the value itself for one value)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method='inclusive')
    return q1, median, q3


def measure(step: Callable[[], None], iters: int, warmup: int, device: torch.device) -> dict:
    """Run ``step`` ``warmup`` times untimed, then ``iters`` times timed: the median step
    time and its quartiles, and the peak memory of the timed steps (see the module
    docstring)."""
    for _ in range(warmup):
        step()
    reset = reset_peak_memory(device)
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak, how = peak_memory(device)
    if not reset:
        how += ', since the process started'
    q1, median, q3 = quartiles(times)
    return dict(step_s=round(median, 4), step_s_q1=round(q1, 4), step_s_q3=round(q3, 4),
                step_s_all=[round(t, 4) for t in times],
                peak_memory_mb=round(peak / 2**20, 1), memory_measure=how)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak; False where the kernel does not allow it."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:  # '5' resets VmHWM to the current RSS (Linux >= 4.0)
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_memory(device: torch.device):
    """(bytes, how they were measured)."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device), 'torch.cuda.max_memory_allocated'
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024, 'peak RSS of the process (VmHWM)'
    raise AdapterkitError('bench: no VmHWM in /proc/self/status (peak memory needs Linux on CPU)')


def format_report(result: dict) -> str:
    merged = ', merged' if result['merged'] else ''
    amp = f", {result['amp']} autocast" if result.get('amp') else ''
    return '\n'.join([
        f"{result['config']}: {result['mode']}{merged}{amp}, batch {result['batch']}, "
        f"{result['img']} px, {len(result['tasks'])} tasks ({', '.join(result['tasks'])}), "
        f"{result['device']} ({result['threads']} threads"
        + (f", malloc {result['cpu_malloc']})" if result['cpu_malloc'] else ')'),
        f"  step         {result['step_s']:.3f} s  (median of {result['iters']}; quartiles "
        f"{result['step_s_q1']:.3f} to {result['step_s_q3']:.3f})",
        f"  throughput   {result['images_per_s']:.2f} img/s",
        f"  peak memory  {result['peak_memory_mb']:,.0f} MB  ({result['memory_measure']})",
    ])
