# The mini Swin of swin-mini_hrnet-head.py with NYUD-MT's four tasks and loss weights.
_base_ = ['./swin-mini_hrnet-head.py']

model = dict(tasks=dict(
    _delete_=True,
    semseg=dict(loss_weight=1.0, num_classes=40),
    depth=dict(loss_weight=1.0),
    normals=dict(loss_weight=10.0),
    edge=dict(loss_weight=50.0),
))
