# Quickstart: the full pipeline (loader, transforms, Swin, HRNet heads, 4 task losses,
# metrics) on the embedded synthetic data, on CPU in a few minutes. Swin 2,278,366 + heads
# 1,458,176 = 3,736,542 trainable.
_base_ = [
    '../_base_/models/swin-mini_hrnet-head.py',
    '../_base_/datasets/synthetic-128.py',
    '../_base_/schedules/quickstart.py',
]
model = dict(adapter=dict(type='Full'))
