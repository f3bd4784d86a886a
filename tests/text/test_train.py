import numpy as np
import pytest
import torch

from bitlatent.text.encoder import TextFeatures
from bitlatent.text.retrieval_metrics import majority_bit_accuracy
from bitlatent.text.model import TextToLatentConfig
from bitlatent.text.train import (
    CHECKPOINT_FILE, AlignmentData, TextTrainConfig, evaluate_alignment, train_text_to_latent,
)

from .synthetic_task import SPEC, synthetic_task

# Measured (CPU): bit accuracy 0.991 against a 0.905 majority baseline and Recall@1 0.97 among the
# 64 images (chance 1/64; untrained 0.02), in 300 joint steps and 300 steps of the codes alone.
EPOCHS, CODE_EPOCHS, BIT_FLOOR, RECALL_FLOOR = 150, 150, 0.97, 0.8
TINY = dict(width=32, heads=2, layers=1, text_layers=1, code_bits=16, image_code_hidden=32)


def random_data(n: int = 24, m: int = 12, seed: int = 0) -> AlignmentData:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 8, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    feats = TextFeatures(rng.standard_normal((offsets[-1], 384)).astype(np.float16), offsets,
                         rng.standard_normal((n, 384)).astype(np.float16))
    bits = rng.integers(0, 2, (m, 2, 3, 3), dtype=np.uint8)
    return AlignmentData(feats, bits, np.arange(n) % m)  # two captions per image


def test_alignment_data_from_ids_and_validation():
    data = random_data()
    paired = AlignmentData.from_ids(data.features, ["b", "a", "b"] * 8, data.latent_bits[:2], ["a", "b"])
    assert paired.image_index.tolist()[:3] == [1, 0, 1]
    with pytest.raises(ValueError, match="without a latent"):
        AlignmentData.from_ids(data.features, ["zzz"] * 24, data.latent_bits[:2], ["a", "b"])
    with pytest.raises(ValueError):
        AlignmentData(data.features, data.latent_bits, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="predicts"):
        train_text_to_latent(data, TextToLatentConfig(latent_h=4, latent_w=4, bits_per_cell=2, **TINY),
                             TextTrainConfig(epochs=1, progress=False))


def _cfg(**kw) -> TextTrainConfig:
    return TextTrainConfig(**{**dict(epochs=2, code_epochs=1, batch_size=8, lr=3e-3, code_lr=3e-3, warmup_steps=2,
                                     progress=False, device="cpu", checkpoint_every=5), **kw})


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path):
    data = random_data()  # 24 captions, batch 8: 3 steps per epoch, 6 steps of bits, then 3 of codes
    mcfg = TextToLatentConfig(latent_h=3, latent_w=3, bits_per_cell=2, patch=1, dropout=0.1, **TINY)  # dropout: RNG restored
    full = train_text_to_latent(data, mcfg, _cfg(), val=data, checkpoint_dir=tmp_path / "full")

    class Killed(Exception):
        pass

    def kill_at_7(step, record):
        if step == 7:
            raise Killed

    with pytest.raises(Killed):  # in the code phase
        train_text_to_latent(data, mcfg, _cfg(), val=data, checkpoint_dir=tmp_path / "run", callback=kill_at_7)
    assert (tmp_path / "run" / CHECKPOINT_FILE).exists()  # written at step 5; steps 6-7 are lost
    seen = []
    resumed = train_text_to_latent(data, mcfg, _cfg(checkpoint_every=2), val=data, checkpoint_dir=tmp_path / "run",
                                   callback=lambda s, r: seen.append(s))  # checkpoint_every may change
    assert seen == [6, 7, 8, 9]
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    for key, values in full.curves.items():
        if key != "wall_time":
            np.testing.assert_array_equal(resumed.curves[key], values, err_msg=key)  # NaN: the code phase's bit accuracy
    assert len(full.curves["loss"]) == 9 and full.curves["val_step"] == [9.0]

    # a finished run returns at once; another run's checkpoint is refused
    again = train_text_to_latent(data, mcfg, _cfg(), val=data, checkpoint_dir=tmp_path / "run",
                                 callback=lambda s, r: pytest.fail("no step expected"))
    assert torch.equal(again.model.bit_bias, full.model.bit_bias)
    with pytest.raises(ValueError, match="another run"):
        train_text_to_latent(data, mcfg, _cfg(seed=1), checkpoint_dir=tmp_path / "run")


@pytest.fixture(scope="module")
def synthetic_64(encoder):
    captions, latents, _ = synthetic_task(64, seed=3)
    return AlignmentData(encoder.encode(captions, progress=False), latents, np.arange(64))


def test_training_learns_a_tiny_synthetic_task(synthetic_64):
    data = synthetic_64
    mcfg = TextToLatentConfig.for_spec(SPEC, **TINY)
    untrained = evaluate_alignment(train_text_to_latent(data, mcfg, _cfg(epochs=0, code_epochs=0)).model, data)
    result = train_text_to_latent(data, mcfg, _cfg(epochs=EPOCHS, code_epochs=CODE_EPOCHS, batch_size=32,
                                                   warmup_steps=10))  # fmt: skip
    scores = evaluate_alignment(result.model, data)
    majority = majority_bit_accuracy(data.latent_bits)
    print(f"majority {majority:.3f} untrained {untrained} trained {scores}")
    assert scores["bit_accuracy"] >= BIT_FLOOR > majority + 0.02
    assert scores["t2i_recall@1"] >= RECALL_FLOOR  # chance: 1/64
    assert scores["t2i_recall@1"] > 5 * untrained["t2i_recall@1"]
    bits = 2 * EPOCHS  # steps of the first phase (64 captions, batch 32)
    bce, contrastive = result.curves["bce"][:bits], result.curves["contrastive"]
    assert np.mean(bce[-5:]) < 0.5 * np.mean(bce[:5])
    # the codes learn in the joint phase and go on in their own
    assert np.mean(contrastive[bits - 5 : bits]) < 0.5 * np.mean(contrastive[:5])
    assert np.mean(contrastive[-5:]) < np.mean(contrastive[bits : bits + 5])


def test_the_code_phase_moves_the_code_heads_alone():
    data = random_data()
    mcfg = TextToLatentConfig(latent_h=3, latent_w=3, bits_per_cell=2, patch=1, **TINY)
    start = train_text_to_latent(data, mcfg, _cfg(epochs=0, code_epochs=0)).model.state_dict()
    joint = train_text_to_latent(data, mcfg, _cfg(code_epochs=0)).model.state_dict()
    codes = train_text_to_latent(data, mcfg, _cfg(epochs=0)).model.state_dict()
    heads = ("text_code_head.", "image_code_head.")
    for name, value in start.items():
        assert not torch.equal(joint[name], value), name  # phase 1 trains every weight
        assert torch.equal(codes[name], value) != name.startswith(heads), name  # phase 2: the heads only


def test_a_cell_prior_trains_beside_the_head(synthetic_64):
    mcfg = TextToLatentConfig.for_spec(SPEC, **TINY, prior_layers=1)
    result = train_text_to_latent(synthetic_64, mcfg, _cfg(epochs=20, batch_size=32, lr=3e-3, warmup_steps=10))
    ce = result.curves["prior_ce"]
    assert ce[0] > np.log(2**SPEC.bits_per_cell) * 0.9  # starts near uniform over a cell's 16 values
    assert np.mean(ce[-4:]) < 0.65 * ce[0]  # measured 2.85 -> 1.56 nats in 40 steps
    plain = train_text_to_latent(synthetic_64, TextToLatentConfig.for_spec(SPEC, **TINY), _cfg(epochs=1))
    assert plain.curves["prior_ce"] == [0.0] * len(plain.curves["step"])
