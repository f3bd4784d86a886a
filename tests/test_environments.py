"""Every Kedro environment's parameters load through the project's config loader (soft merge
over conf/base) and build every typed config: a misspelt or invalid key in conf/<env>/ fails
here, not an hour into a run."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from bitlatent import settings
from bitlatent.core.decoder import DecoderConfig
from bitlatent.core.train import TrainConfig
from bitlatent.data.config import DataConfig
from bitlatent.export.config import ExportConfig
from bitlatent.pipelines.alignment.parameters import AlignmentConfig
from bitlatent.pipelines.decoder_pretraining.parameters import PretrainingConfig
from bitlatent.pipelines.evaluation.parameters import EvaluationConfig
from bitlatent.pipelines.latent_adaptation.parameters import AdaptationConfig
from bitlatent.text.model import TextToLatentConfig
from bitlatent.text.train import TextTrainConfig

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


def names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


FIT = {name for name in names(TrainConfig) if name.startswith("fit_")}
RUNTIME = {"device", "amp", "cpu_bf16", "channels_last", "progress"}  # where and how fast, not what is computed
# Every field conf/base must name, so that `dvc params diff` shows every value a run used. Left
# out, and why: the runtime settings above, what each stage does not read (pretraining: the
# fitting fields; fitting: the pretraining ones), facts recorded from the data and the encoder
# (the latent grid, image_size, text_dim, encoder_*), and when the alignment evaluates.
IN_BASE = {
    ("data",): names(DataConfig),
    ("decoder",): names(DecoderConfig) - {"image_size"},
    ("pretraining",): names(PretrainingConfig),
    ("pretraining", "train"): names(TrainConfig) - RUNTIME - FIT,
    ("latent_adaptation",): names(AdaptationConfig),
    ("latent_adaptation", "train"): FIT | {"seed", "logit_clip"},
    ("alignment",): names(AlignmentConfig),
    ("alignment", "model"): names(TextToLatentConfig) - {"latent_h", "latent_w", "bits_per_cell", "image_size",
                                                         "text_dim", "encoder_name", "encoder_revision"},
    ("alignment", "train"): names(TextTrainConfig) - RUNTIME - {"eval_every", "eval_batch_size"},
    ("evaluation",): names(EvaluationConfig),
    ("export",): names(ExportConfig),
}


@pytest.mark.parametrize("path", sorted(IN_BASE), ids=".".join)
def test_conf_base_names_every_hyperparameter(path):
    group = parameters("base")
    for key in path:
        group = group[key]
    missing = sorted(IN_BASE[path] - set(group))
    assert not missing, f"conf/base: {'.'.join(path)} does not name {missing} (dvc params diff would not show them)"
