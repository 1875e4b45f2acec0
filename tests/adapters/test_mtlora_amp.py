import os.path as osp

import torch

import adapterkit

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_mtlora_trains_under_bf16_autocast():
    """`--amp` on CPU is bf16 autocast: the in-place low-rank products must follow it."""
    cfg = adapterkit.load_config(osp.join(REPO, 'configs/quickstart/mtlora_swin-mini_synthetic-128.py'),
                                 {'model.backbone.img_size': 64})
    model = adapterkit.build_model(cfg)
    for name, param in model.backbone.named_parameters():
        if 'lora_shared_B' in name or 'lora_tasks_B' in name:
            torch.nn.init.normal_(param, std=0.02)  # make the low-rank terms non-zero
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 64))
    assert all(v.dtype == torch.bfloat16 for v in out.values())
    sum(v.float().mean() for v in out.values()).backward()
    grads = [p.grad for n, p in model.backbone.named_parameters() if 'lora_tasks_A' in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
