"""Measure the MTLoRA reference implementation (scale-lab/MTLoRA) the way `adapterkit bench`
measures adapterkit, so both figures come from one machine and one method.

    python benchmarks/bench_reference_mtlora.py /path/to/MTLoRA [--mode train|infer]
        [--rank 64] [--task-rank 4] [--plus] [--tasks semseg,human_parts,sal,normals]
        [--batch 2] [--img 448] [--iters 3] [--warmup 1] [--threads 2]
        [--cpu-malloc system|retain] [--amp] [--json]

It imports the reference's own Swin (``models/swin_transformer_mtlora.py``) and multi-task
wrapper (``models/swin_mtl.py``) from the given checkout, configured as its released Swin-T
configs (drop path 0.2, scale 4, LoRA dropout 0.05, HRNet heads, per-task downsamplers),
marks the trainable set with its own ``mark_only_lora_as_trainable`` as its ``main.py`` does,
and times the same step as `adapterkit bench`: forward, adapterkit's task losses on random
targets, backward and AdamW on the trainable parameters (train), or a forward under no_grad
in eval mode (infer; the reference cannot merge). ``--amp`` runs forward and losses under the
autocast of `adapterkit bench --amp` (the reference's own AMP is CUDA-only). Random weights:
speed does not depend on them. Nothing of the reference is copied here; only its checkout is
imported.

The reference imports ``ptflops`` at module level (for FLOP counting only); where it is not
installed, an empty stand-in module lets the import pass.
"""
import argparse
import contextlib
import json
import os.path as osp
import sys
import types
from types import SimpleNamespace

import torch

STAGES = 4
NUM_OUTPUTS = dict(semseg=21, human_parts=7, sal=1, normals=3, edge=1, depth=1)


def reference_model(checkout: str, tasks, rank: int, task_rank: int, plus: bool, img: int):
    if not osp.isfile(osp.join(checkout, 'models', 'swin_transformer_mtlora.py')):
        raise SystemExit(f'{checkout}: not a checkout of scale-lab/MTLoRA '
                         '(no models/swin_transformer_mtlora.py)')
    sys.path.insert(0, checkout)
    try:
        import ptflops  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType('ptflops')
        stand_in.get_model_complexity_info = None
        sys.modules['ptflops'] = stand_in
    from models.lora import mark_only_lora_as_trainable
    from models.swin_mtl import MultiTaskSwin
    from models.swin_transformer_mtlora import SwinTransformerMTLoRA

    ranks = {'shared': rank, **{t: task_rank for t in tasks}}
    mtlora = SimpleNamespace(
        ENABLED=True, R_PER_TASK_LIST=[dict(ranks) for _ in range(STAGES)],
        SHARED_SCALE=[4.0] * STAGES,
        SCALE_PER_TASK_LIST=[{t: 4.0 for t in tasks} for _ in range(STAGES)],
        DROPOUT=[0.05] * STAGES, TRAINABLE_SCALE_SHARED=False, TRAINABLE_SCALE_PER_TASK=False,
        INTERMEDIATE_SPECIALIZATION=False, SHARED_MODE='matrix', QKV_ENABLED=True,
        PROJ_ENABLED=True, FC1_ENABLED=True, FC2_ENABLED=True, DOWNSAMPLER_ENABLED=plus)
    encoder = SwinTransformerMTLoRA(img_size=img, embed_dim=96, depths=[2, 2, 6, 2],
                                    num_heads=[3, 6, 12, 24], window_size=7,
                                    num_classes=0, drop_path_rate=0.2, tasks=list(tasks),
                                    mtlora=mtlora)
    config = SimpleNamespace(
        TASKS=list(tasks),
        TASKS_CONFIG=SimpleNamespace(ALL_TASKS=SimpleNamespace(
            NUM_OUTPUT={t: NUM_OUTPUTS[t] for t in tasks})),
        MODEL=SimpleNamespace(MTLORA=mtlora, DECODER_CHANNELS=[18, 36, 72, 144],
                              DECODER_DOWNSAMPLER=True, PER_TASK_DOWNSAMPLER=True,
                              DECODER_HEAD={t: 'hrnet' for t in tasks}),
        DATA=SimpleNamespace(IMG_SIZE=img))
    model = MultiTaskSwin(encoder, config)
    mark_only_lora_as_trainable(model.backbone, bias='none',
                                freeze_downsample_reduction=plus)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkout', help='a checkout of github.com/scale-lab/MTLoRA')
    parser.add_argument('--mode', choices=['train', 'infer'], default='train')
    parser.add_argument('--rank', type=int, default=64)
    parser.add_argument('--task-rank', type=int, default=4)
    parser.add_argument('--plus', action='store_true', help='MTLoRA+')
    parser.add_argument('--tasks', default='semseg,human_parts,sal,normals')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--img', type=int, default=448)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int)
    parser.add_argument('--cpu-malloc', choices=['system', 'retain'], default='system',
                        help="glibc's allocator on CPU: as the reference runs (system), or "
                             "as adapterkit's CPU runs set it (retain)")
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision, as adapterkit bench --amp')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)

    import adapterkit  # noqa: F401  (task losses and the measuring code)
    from adapterkit.engine.bench import measure, random_targets
    from adapterkit.engine.cpu_malloc import configure_cpu_malloc
    from adapterkit.engine.optim import amp_autocast, amp_dtype
    from adapterkit.tasks.base import build_tasks

    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = build_tasks(args.tasks.split(','))
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    cpu_malloc = configure_cpu_malloc(args.cpu_malloc) if device.type == 'cpu' else None
    with contextlib.redirect_stdout(sys.stderr):  # the reference prints as it builds
        model = reference_model(args.checkout, list(tasks), args.rank, args.task_rank,
                                args.plus, args.img).to(device)
    inputs = torch.randn(args.batch, 3, args.img, args.img, device=device)
    if args.mode == 'train':
        model.train()
        targets = random_targets(tasks, args.batch, args.img, device)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=1e-4)

        def step():
            with amp_autocast(device.type, args.amp):
                logits = model(inputs)
                loss = sum(task.loss_weight * task.loss(logits[name], targets[name])
                           for name, task in tasks.items())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step():
            with torch.no_grad(), amp_autocast(device.type, args.amp):
                model(inputs)

    figures = measure(step, args.iters, args.warmup, device)
    result = dict(implementation='scale-lab/MTLoRA', mode=args.mode, rank=args.rank,
                  task_rank=args.task_rank, plus=args.plus, device=str(device),
                  threads=torch.get_num_threads(), cpu_malloc=cpu_malloc, batch=args.batch,
                  img=args.img,
                  amp=str(amp_dtype(device.type)).removeprefix('torch.') if args.amp else None,
                  tasks=list(tasks), trainable=sum(p.numel() for p in model.parameters()
                                                   if p.requires_grad),
                  images_per_s=round(args.batch / figures['step_s'], 3), **figures)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"reference MTLoRA{'+' if args.plus else ''} r={args.rank}: {args.mode}, batch "
              f"{args.batch}, {args.img} px, {len(tasks)} tasks, {device} "
              f"({result['threads']} threads): {figures['step_s']:.3f} s/step, peak "
              f"{figures['peak_memory_mb']:,.0f} MB ({figures['memory_measure']})")
    return 0


if __name__ == '__main__':
    sys.exit(main())
