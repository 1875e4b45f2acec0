# Swin-T with an HRNet-style head per task for NYUD-MT's four tasks, with the MTLoRA reference
# code's loss weights (main.py: depth 1, semseg 1, normals 10, edge 50). The reference's
# `--nyud` path supports exactly these tasks (get_tasks_config in data/mtl_ds.py).
_base_ = ['./swin-t_hrnet-head.py']

model = dict(tasks=dict(
    _delete_=True,
    semseg=dict(loss_weight=1.0, num_classes=40),
    depth=dict(loss_weight=1.0),
    normals=dict(loss_weight=10.0),
    edge=dict(loss_weight=50.0),
))
