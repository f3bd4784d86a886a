"""bitlatent.codec.entropy_train: deterministic runs, resumption after a kill, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bitlatent.codec.entropy_train import CHECKPOINT_FILE, entropy_identity, train_entropy_model
from tests.codec.conftest import structured_data, tiny_model_config, tiny_train_config

PATTERNS = np.random.default_rng(7).integers(0, 2, (4, 4, 4, 4), dtype=np.uint8)


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_model_and_curves_and_a_finished_one_returns(tmp_path):
    data, _ = structured_data(40, 0, PATTERNS)
    config = tiny_train_config(steps=12, checkpoint_every=5, batch_size=8)
    whole = train_entropy_model(data, tiny_model_config(), config)

    def kill(step: int, record: dict) -> None:
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        train_entropy_model(data, tiny_model_config(), config, tmp_path, callback=kill)
    steps = []
    resumed = train_entropy_model(data, tiny_model_config(), config, tmp_path, callback=lambda s, r: steps.append(s))
    assert steps == list(range(6, 13)), "resumes from the checkpoint of step 5"
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert {k: v for k, v in resumed.curves.items() if k != "wall_time"} == \
        {k: v for k, v in whole.curves.items() if k != "wall_time"}
    steps.clear()
    train_entropy_model(data, tiny_model_config(), config, tmp_path, callback=lambda s, r: steps.append(s))
    assert steps == [], "a finished run trains no further step"


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    data, _ = structured_data(40, 0, PATTERNS)
    train_entropy_model(data, tiny_model_config(), tiny_train_config(steps=2, batch_size=8), tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    with pytest.raises(ValueError, match="belongs to another run"):
        train_entropy_model(data, tiny_model_config(), tiny_train_config(steps=2, batch_size=8, lr=0.5), tmp_path)


def test_the_run_key_follows_data_and_configs_but_not_progress():
    data, _ = structured_data(40, 0, PATTERNS)
    other, _ = structured_data(40, 1, PATTERNS)
    key = entropy_identity(tiny_model_config(), tiny_train_config(), data).key
    assert entropy_identity(tiny_model_config(), tiny_train_config(progress=True, checkpoint_every=7), data).key == key
    assert entropy_identity(tiny_model_config(), tiny_train_config(steps=3), data).key != key
    assert entropy_identity(tiny_model_config(), tiny_train_config(), other).key != key


def test_latents_of_another_shape_are_refused():
    data, _ = structured_data(8, 0, PATTERNS)
    config = tiny_model_config()
    config.latent_h = 8
    with pytest.raises(ValueError, match=r"codes \(4, 8, 4\) latents, the data has \(4, 4, 4\)"):
        train_entropy_model(data, config, tiny_train_config(steps=1))
