# Quickstart on NYUD-MT: MTLoRA on the mini Swin for semseg (40 classes), depth, normals and
# edge, on synthetic rooms (`adapterkit synth data/synthetic-nyud --layout nyud --size 96x128`),
# on CPU in a few minutes.
_base_ = [
    '../_base_/models/swin-mini_hrnet-head_nyud.py',
    '../_base_/datasets/synthetic-nyud-128.py',
    '../_base_/schedules/quickstart.py',
]
model = dict(adapter=dict(type='MTLoRA', rank=8, task_rank=4, scale=4.0, dropout=0.05))
