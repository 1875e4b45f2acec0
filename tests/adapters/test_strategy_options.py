"""The `trainable` option every strategy shares (its aliases, and what it adds to a
strategy's own set); tests/adapters/test_contract.py checks the rest for every strategy."""
import re

import pytest

from adapterkit.adapters import TRAINABLE_ALIASES


def trainable(model):
    return {n for n, p in model.backbone.named_parameters() if p.requires_grad}


def names(model, pattern):
    return {n for n, _ in model.backbone.named_parameters() if re.fullmatch(pattern, n)}


@pytest.mark.parametrize('alias, example, count', [
    ('norms', 'layers.1.downsample.norm.weight', 2 * (1 + 4 * 2 + 3)),  # embed, 2/block, merges
    ('patch_embed', 'patch_embed.proj.weight', 4),
    ('relative_position_bias', 'layers.0.blocks.0.attn.relative_position_bias_table', 4),
    ('patch_merging', 'layers.3.downsample.reduction.weight', 3 * 3),
])
def test_aliases_name_the_usual_extra_parts(tiny_model, alias, example, count):
    model = tiny_model(dict(type='DecoderOnly', trainable=[alias]))
    assert trainable(model) == names(model, TRAINABLE_ALIASES[alias])
    assert example in trainable(model) and len(trainable(model)) == count


def test_trainable_patterns_add_to_the_strategy_own_set(tiny_model):
    model = tiny_model(dict(type='LoRA', rank=2,
                            trainable=['norms', r'layers\.3\.blocks\.0\.mlp\.fc2\.bias']))
    lora = names(model, r'.*\.lora_[AB]')
    assert len(lora) == 2 * 16
    assert trainable(model) == lora | names(model, TRAINABLE_ALIASES['norms']) | {
        'layers.3.blocks.0.mlp.fc2.bias'}
    assert set(model.adapters[0].trained_names) == trainable(model)
    assert set(model.adapters[0].trainable_state_dict(model)) == trainable(model)


def test_a_strategy_converts_a_checkpoint_of_its_own_layout_when_the_model_loads_it(tiny_model):
    import torch

    from adapterkit.adapters import BitFit

    class Renamed(BitFit):  # a method whose reference code names the backbone 'encoder.'
        def convert_state_dict(self, state_dict):
            if not any(key.startswith('encoder.') for key in state_dict):
                return None
            return {('backbone.' + key[len('encoder.'):]) if key.startswith('encoder.')
                    else key: value for key, value in state_dict.items()}

    trained = tiny_model(dict(type='BitFit'))
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    foreign = {key.replace('backbone.', 'encoder.', 1): value
               for key, value in trained.state_dict().items()}
    model = tiny_model([Renamed()])
    model.load_state_dict(foreign)  # strict: every key arrived converted
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    model.load_state_dict(trained.state_dict())  # its own layout: left as it is
    from adapterkit.errors import CheckpointError
    with pytest.raises(CheckpointError, match='unexpected keys: encoder'):  # nobody claims it
        tiny_model(dict(type='BitFit')).load_state_dict(foreign)
