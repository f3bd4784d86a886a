"""Kedro project settings: the defaults, spelled out."""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/<env>/parameters*.yml override single keys (deep merge), not whole groups.
    "merge_strategy": {"parameters": "soft"},
}
