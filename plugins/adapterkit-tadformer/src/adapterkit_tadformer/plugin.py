"""The adapterkit entry point of this package: registers TADFormer, serves its configs."""
import os.path as osp

import adapterkit

from .tadformer import TADFormer


@adapterkit.hookimpl
def adapterkit_register_modules(registries):
    registries.ADAPTERS.register_module(module=TADFormer)


@adapterkit.hookimpl
def adapterkit_config_dirs():
    return [osp.join(osp.dirname(osp.abspath(__file__)), 'configs')]
