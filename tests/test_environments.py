"""Every Kedro environment's parameters load through the project's config loader (soft merge
over conf/base) and build every typed config: a misspelt or invalid key in conf/<env>/ fails
here, not an hour into a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from bitlatent import settings
from bitlatent.core.decoder import DecoderConfig
from bitlatent.data.config import DataConfig
from bitlatent.export.config import ExportConfig
from bitlatent.pipelines.alignment.parameters import AlignmentConfig
from bitlatent.pipelines.decoder_pretraining.parameters import PretrainingConfig
from bitlatent.pipelines.evaluation.parameters import EvaluationConfig
from bitlatent.pipelines.latent_adaptation.parameters import AdaptationConfig

PROJECT = Path(__file__).resolve().parents[1]
ENVS = sorted(p.name for p in (PROJECT / "conf").iterdir() if p.is_dir() and p.name not in ("base", "local"))


def parameters(env: str) -> dict:
    args = {**settings.CONFIG_LOADER_ARGS, "default_run_env": env}
    return OmegaConfigLoader(str(PROJECT / "conf"), **args)["parameters"]


@pytest.mark.parametrize("env", ["base", *ENVS])
def test_environment_parameters_build_every_config(env):
    params = parameters(env)
    DataConfig.from_dict(params["data"])
    DecoderConfig.from_dict({**params["decoder"], "image_size": params["data"].get("image_size", 64)})
    PretrainingConfig.from_dict(params["pretraining"])
    AdaptationConfig.from_dict(params["latent_adaptation"])
    AlignmentConfig.from_dict(params["alignment"])
    EvaluationConfig.from_dict(params["evaluation"])
    ExportConfig.from_dict(params["export"])


def test_an_environment_overrides_single_keys_not_whole_groups():
    base, flickr = parameters("base"), parameters("flickr8k")
    assert flickr["pretraining"]["train"]["cpu_bf16"] is True and "cpu_bf16" not in base["pretraining"]["train"]
    # keys the environment does not name come from conf/base
    assert flickr["pretraining"]["train"]["seed"] == base["pretraining"]["train"]["seed"]
    assert flickr["pretraining"]["checkpoint_root"] == base["pretraining"]["checkpoint_root"]
    assert flickr["data"]["format"] == "csv" and base["data"]["format"] == "synthetic"
