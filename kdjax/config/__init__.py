"""Configs: defaults every config file starts from, the paper presets, PaddleClas YAML translation, and `check`, the
one validation entry point every route (train, eval, check, sweep, cache_teacher, bench) calls first."""

from kdjax.config.defaults import base_config, loss_entry, model_entry  # noqa: F401
