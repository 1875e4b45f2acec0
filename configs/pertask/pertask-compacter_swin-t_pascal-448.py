# Table 1's Compacter row (Polyhistor's benchmark, followed by MTLoRA's Table 1): every task
# its own Compacter (configs/compacter/compacter_swin-t_pascal-448.py: 24 adapters, bottleneck
# width / 4, n = 4, rank 1, one rule tensor per copy) over one frozen Swin-T at 448.
# 1,946,624 + 4 x 33,184 = 2,079,360 trainable (decoders + T x the method's count). The
# published 2.78M is ~0.1M more after Polyhistor's constant +0.60M: docs/strategies.md.
_base_ = ['../compacter/compacter_swin-t_pascal-448.py']
model = dict(adapter=dict(_delete_=True, type='PerTask', strategy=dict(
    type='Compacter', placement='houlsby', reduction_factor=4, phm_dim=4, rank=1,
    share_rule='model')))
