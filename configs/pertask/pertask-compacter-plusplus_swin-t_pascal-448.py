# Table 1's Compacter++ row (Polyhistor's benchmark): every task its own Compacter++
# (configs/compacter/compacter-plusplus_swin-t_pascal-448.py: 12 adapters after the MLPs,
# bottleneck width / 4, n = 4, rank 1) over one frozen Swin-T at 448.
# 1,946,624 + 4 x 16,624 = 2,013,120 trainable (decoders + T x the method's count).
_base_ = ['../compacter/compacter-plusplus_swin-t_pascal-448.py']
model = dict(adapter=dict(_delete_=True, type='PerTask', strategy=dict(
    type='CompacterPlusPlus', placement='pfeiffer', reduction_factor=4, phm_dim=4, rank=1,
    share_rule='model')))
