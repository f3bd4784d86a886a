"""Every Kedro environment's parameters load through the project's config loader (soft merge
over conf/base) and build every typed config: a misspelt or invalid key in conf/<env>/ fails
here, not an hour into a run."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from bitlatent import settings
from bitlatent.codec.entropy_model import EntropyModelConfig
from bitlatent.codec.entropy_train import EntropyTrainConfig
from bitlatent.core.capacity import capacity_report
from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig
from bitlatent.core.train import TrainConfig
from bitlatent.data.config import DataConfig
from bitlatent.export.config import ExportConfig
from bitlatent.pipelines.alignment.parameters import AlignmentConfig
from bitlatent.pipelines.compression.parameters import CompressionConfig
from bitlatent.pipelines.decoder_pretraining.parameters import PretrainingConfig
from bitlatent.pipelines.evaluation.parameters import EvaluationConfig
from bitlatent.pipelines.latent_adaptation.parameters import AdaptationConfig
from bitlatent.text.model import TextToLatent, TextToLatentConfig
from bitlatent.text.train import TextTrainConfig

PROJECT = Path(__file__).resolve().parents[1]
ENVS = sorted(p.name for p in (PROJECT / "conf").iterdir() if p.is_dir() and p.name not in ("base", "local"))
GPU_ENVS = [env for env in ENVS if env == "gpu" or env.endswith("_gpu")]


def parameters(env: str) -> dict:
    args = {**settings.CONFIG_LOADER_ARGS, "default_run_env": env}
    return OmegaConfigLoader(str(PROJECT / "conf"), **args)["parameters"]


def decoder_config(params: dict) -> DecoderConfig:
    """The decoder at the environment's own image size, as decoder_pretraining builds it from the shards."""
    return DecoderConfig.from_dict({**params["decoder"], "image_size": params["data"]["image_size"]})


def test_the_readme_names_only_shipped_environments():
    named = set(re.findall(r"--env[ =]([A-Za-z0-9_]+)", (PROJECT / "README.md").read_text()))
    assert named, "README.md names no environment"
    assert named <= set(ENVS), f"README.md names environments conf/ lacks: {sorted(named - set(ENVS))}"


@pytest.mark.parametrize("env", ["base", *ENVS])
def test_environment_parameters_build_every_config(env):
    params = parameters(env)
    data = DataConfig.from_dict(params["data"])
    decoder = decoder_config(params)  # raises when the latent grid does not fit the image size
    assert decoder.image_size == data.image_size
    renderer = BinaryLatentDecoder(decoder)
    PretrainingConfig.from_dict(params["pretraining"])
    AdaptationConfig.from_dict(params["latent_adaptation"])
    alignment = AlignmentConfig.from_dict(params["alignment"])
    # the text model on the decoder's latent grid, as the alignment pipeline builds it
    text = replace(alignment.model, latent_h=decoder.latent_h, latent_w=decoder.latent_w,
                   bits_per_cell=decoder.bits_per_cell, image_size=decoder.image_size)
    assert TextToLatent(text, renderer).latent_spec == decoder.latent_spec()
    EvaluationConfig.from_dict(params["evaluation"])
    ExportConfig.from_dict(params["export"])


# Pretraining images each GPU environment's data gives: conf/flickr8k's split of the 7,091
# Flickr8k photos; for synthetic scenes, the 9,051 of 20,000 pairs at a pretrain fraction of 0.5
# (docs/experiments.md), scaled to 0.7.
PRETRAIN_IMAGES = {"gpu": 9051, "k8s_gpu": 9051, "synthetic64_gpu": 12_671, "flickr8k_gpu": 4206}


@pytest.mark.parametrize("env", GPU_ENVS)
def test_gpu_decoders_hold_at_most_the_pretraining_latents_bits(env):
    params = parameters(env)
    decoder = decoder_config(params)
    report = capacity_report(decoder.latent_spec(), PRETRAIN_IMAGES[env], BinaryLatentDecoder(decoder), warn=False)
    assert report.ratio <= params["evaluation"]["max_capacity_ratio"], report
    assert params["pretraining"]["train"]["device"] == "cuda" and params["alignment"]["train"]["device"] == "cuda"


# Each combination holds its data setting's keys and conf/gpu's runtime keys (Kedro's --env takes
# one environment); these keys must not drift from the folders they come from.
SAME = {
    ("data",): ["format", "path", "image_size", "splits"],
    ("decoder",): ["latent_h", "latent_w", "bits_per_cell"],
    ("latent_adaptation", "train"): ["fit_steps", "fit_lr", "fit_betas"],
    ("alignment",): ["extra_wordings"],
}
RUNTIME_PATHS = {("pretraining", "train"): ["device", "amp", "batch_size"],
                 ("latent_adaptation", "train"): ["device", "amp", "fit_batch_size"],
                 ("alignment", "train"): ["device", "batch_size"]}


def pick(params: dict, keys: dict) -> dict:
    out = {}
    for path, names in keys.items():
        group = params
        for key in path:
            group = group[key]
        out.update({(*path, name): group.get(name) for name in names})
    return out


@pytest.mark.parametrize("env", [env for env in GPU_ENVS if env != "gpu"])
def test_a_gpu_combination_keeps_its_data_setting_and_the_gpu_runtime(env):
    combined, data, gpu = parameters(env), parameters(env.removesuffix("_gpu")), parameters("gpu")
    assert pick(combined, SAME) == pick(data, SAME)
    assert pick(combined, RUNTIME_PATHS) == pick(gpu, RUNTIME_PATHS)


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
    ("compression",): names(CompressionConfig),
    ("compression", "model"): names(EntropyModelConfig) - {"latent_h", "latent_w", "bits_per_cell", "text_dim"},
    ("compression", "train"): names(EntropyTrainConfig) - RUNTIME,
}


@pytest.mark.parametrize("path", sorted(IN_BASE), ids=".".join)
def test_conf_base_names_every_hyperparameter(path):
    group = parameters("base")
    for key in path:
        group = group[key]
    missing = sorted(IN_BASE[path] - set(group))
    assert not missing, f"conf/base: {'.'.join(path)} does not name {missing} (dvc params diff would not show them)"
