"""Any mmseg decode head as an adapterkit task head."""
from mmengine.model import BaseModule

from adapterkit.registry import MODELS


@MODELS.register_module()
class MMSegHead(BaseModule):
    """Wrap an mmseg decode head built from ``decode_head`` (a config dict).

    ``in_channels`` and ``num_outputs`` are filled in from the backbone and the task;
    ``in_index`` defaults to all four maps (an int picks one map). The head's own loss is
    never used: adapterkit's tasks compute the losses.

    Args:
        decode_head: mmseg decode head config, e.g. ``dict(type='SegformerHead', channels=256)``.
        in_channels: channels of the four backbone maps.
        num_outputs: output channels of the task.
    """

    def __init__(self, decode_head, in_channels, num_outputs, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        # imported here so that `import adapterkit.models` does not pay for mmseg
        from mmseg.registry import MODELS as MMSEG_MODELS

        cfg = dict(decode_head)
        in_index = cfg.setdefault('in_index', list(range(len(in_channels))))
        if isinstance(in_index, int):
            cfg['in_channels'] = in_channels[in_index]
        else:
            cfg['in_index'] = list(in_index)
            cfg['in_channels'] = [in_channels[i] for i in in_index]
        cfg['num_classes'] = num_outputs
        cfg['out_channels'] = num_outputs
        if num_outputs == 1:
            cfg.setdefault('threshold', 0.5)  # mmseg warns and picks 0.3 when unset
        cfg.setdefault('norm_cfg', dict(type='BN', requires_grad=True))
        # never used (tasks own the losses); avg_non_ignore only silences mmseg's warning
        cfg.setdefault('loss_decode', dict(type='CrossEntropyLoss', avg_non_ignore=True))
        cfg['_scope_'] = 'mmseg'
        self.decode_head = MMSEG_MODELS.build(cfg)

    def forward(self, feats):
        return self.decode_head(feats)
