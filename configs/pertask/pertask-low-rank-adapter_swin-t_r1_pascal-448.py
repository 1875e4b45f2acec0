# Table 1's low-rank adapter row (Polyhistor's benchmark): every task its own low-rank
# adapters (configs/low_rank_adapter/low-rank-adapter_swin-t_r1_pascal-448.py: 24 adapters,
# bottleneck width / 4, projections of rank 1) over one frozen Swin-T at 448.
# 1,946,624 + 4 x 33,120 = 2,079,104 trainable (decoders + T x the method's count).
_base_ = ['../low_rank_adapter/low-rank-adapter_swin-t_r1_pascal-448.py']
model = dict(adapter=dict(_delete_=True, type='PerTask', strategy=dict(
    type='LowRankAdapter', placement='houlsby', reduction_factor=4, rank=1)))
