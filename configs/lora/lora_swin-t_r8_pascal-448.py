# LoRA as in lora_swin-t_r4_pascal-448.py with rank 8: adds 70,656 x 8 = 565,248
# parameters; 2,511,872 trainable with the four HRNet heads.
_base_ = ['./lora_swin-t_r4_pascal-448.py']
model = dict(adapter=dict(rank=8))
