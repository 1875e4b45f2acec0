"""load_config's rule for --cfg-options keys (docs/user_guide.md, "Overriding config keys"):
a misspelled key is refused naming the closest existing one; keys that are new on purpose
still work."""
import os.path as osp

import pytest

from adapterkit import load_config
from adapterkit.errors import ConfigError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LORA = osp.join(REPO, 'configs/quickstart/lora_swin-mini_synthetic-128.py')


@pytest.mark.parametrize('options, message', [
    ({'trian_cfg.max_iters': 1}, 'no key trian_cfg in the config; did you mean train_cfg?'),
    ({'train_cfg.max_iter': 1}, 'no key max_iter in train_cfg; did you mean '
                                'train_cfg.max_iters?'),
    ({'max_iter': 1}, 'no key max_iter in the config; did you mean max_iters?'),
    ({'model.adaptr.rank': 4}, 'no key adaptr in model; did you mean model.adapter?'),
    ({'optimizer.lr': 0.1}, 'no key optimizer in the config (the closest is optim_wrapper); '
                            'only one level can be added below an existing key'),
    ({'custom_hooks.7.type': 'X'}, 'custom_hooks has 4 entries, no entry 7'),
    ({'model.backbone.pretrained.path': 'x'}, 'model.backbone.pretrained is None, not a dict'),
])
def test_a_key_that_is_not_in_the_config_is_refused_naming_the_closest(options, message):
    with pytest.raises(ConfigError) as caught:
        load_config(LORA, options)
    assert str(caught.value).startswith(f'--cfg-options {next(iter(options))}: {message}')
    assert caught.value.key == next(iter(options))


@pytest.mark.parametrize('options, where, value', [
    ({'model.adapter.dropout': 0.1}, ('model', 'adapter', 'dropout'), 0.1),  # an option
    ({'randomness.deterministic': True}, ('randomness', 'deterministic'), True),
    ({'env_cfg.dist_cfg.timeout': 60}, ('env_cfg', 'dist_cfg', 'timeout'), 60),
    ({'train_dataloader.persistent_workers': True},
     ('train_dataloader', 'persistent_workers'), True),
    ({'model.tasks.depth.loss_weight': 2.0}, ('model', 'tasks', 'depth', 'loss_weight'), 2.0),
    ({'default_hooks.empty_cache.type': 'EmptyCacheHook'},
     ('default_hooks', 'empty_cache', 'type'), 'EmptyCacheHook'),
    ({'strategy.type': 'DDPStrategy'}, ('strategy', 'type'), 'DDPStrategy'),  # Runner's
    ({'auto_scale_lr.base_batch_size': 16}, ('auto_scale_lr', 'base_batch_size'), 16),
    ({'model.head._delete_': True, 'model.head.type': 'MMSegHead',
      'model.head.decode_head.type': 'FCNHead'}, ('model', 'head', 'decode_head', 'type'),
     'FCNHead'),
    ({'train_cfg.max_iters': 7}, ('train_cfg', 'max_iters'), 7),  # an existing key
])
def test_keys_that_are_new_on_purpose_are_added(options, where, value):
    node = load_config(LORA, options)
    for key in where:
        node = node[key]
    assert node == value
