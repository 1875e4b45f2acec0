"""Every config file adapterkit and its installed plugins ship loads, and every model config
builds (on the meta device: no memory, no weights) with the parameter counts its header
states.

A leaf config with a model (any file outside ``_base_/``) states its trainable count in its
header comment (``... 2,229,248 trainable``) and may state what the strategy adds (``adds
282,624 parameters``): both are checked here, so a header cannot drift from the code. A
compare suite (a file with ``members``) is checked by ``load_suite``; the other files of
``_base_/`` are fragments that only have to load.
"""
import os
import re

import pytest
import torch
from mmengine.config import Config

from adapterkit import build_model, count_parameters, load_config
from adapterkit.engine.compare_suite import load_suite
from adapterkit.plugins import load_plugins, plugin_bases, resolve_config

TRAINABLE = re.compile(r'([\d,]*\d) trainable')
ADDS = re.compile(r'adds (?:[\w,+ ]*= )?([\d,]*\d) parameters', re.IGNORECASE)


def shipped():
    """``PROVIDER::relative/path.py`` of every config file of every provider."""
    found = []
    for provider, folders in load_plugins().config_providers().items():
        for folder in folders:
            for root, _, files in os.walk(folder):
                found += [f'{provider}::{os.path.relpath(os.path.join(root, f), folder)}'
                          for f in files if f.endswith('.py')]
    return sorted(found)


CONFIGS = shipped()


def header(path: str) -> str:
    """The comment lines a config starts with, as one line of text."""
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith('#'):
                break
            lines.append(line.lstrip('#').strip())
    return ' '.join(lines)


def number(match) -> int:
    return int(match.group(1).replace(',', ''))


def test_the_walk_sees_adapterkit_and_plugin_configs():
    assert 'adapterkit::lora/lora_swin-t_r4_pascal-448.py' in CONFIGS
    assert 'adapterkit::compare/quickstart.py' in CONFIGS
    assert 'dora::quickstart/dora_swin-mini_r4_synthetic-128.py' in CONFIGS
    assert 'tadformer::tadformer-dynamic_swin-t_r64_pascal-448.py' in CONFIGS


@pytest.mark.parametrize('config', CONFIGS)
def test_config_loads_and_builds_with_the_counts_of_its_header(config):
    path = resolve_config(config)
    with plugin_bases():
        raw = Config.fromfile(path)
    if 'members' in raw:
        assert load_suite(config).members
        return
    fragment = '_base_' in config.split('::', 1)[1].split(os.sep)
    if 'model' not in raw:
        assert fragment, f'{config}: a config outside _base_/ needs a model'
        return
    with torch.device('meta'):
        model = build_model(load_config(config))
    counts = count_parameters(model)
    text = header(path)
    stated = TRAINABLE.search(text)
    assert stated or fragment, f'{config}: its header states no "N trainable" count'
    if stated:
        assert number(stated) == counts['trainable'], text
    adds = ADDS.search(text)
    if adds:
        assert number(adds) == counts['backbone_adapter'], text
