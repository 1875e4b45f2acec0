# PHM adapters per task, the setting of Table 1's single-task rows (no PHM row was
# published): every task its own PHM adapters (configs/phm/phm-adapter_swin-t_pascal-448.py:
# 24 adapters, bottleneck width / 4, n = 4, full B_i, rules per layer) over one frozen Swin-T
# at 448. 1,946,624 + 4 x 553,248 = 4,159,616 trainable (decoders + T x the method's count).
_base_ = ['../phm/phm-adapter_swin-t_pascal-448.py']
model = dict(adapter=dict(_delete_=True, type='PerTask', strategy=dict(
    type='PHMAdapter', placement='houlsby', reduction_factor=4, phm_dim=4,
    share_rule='layer')))
