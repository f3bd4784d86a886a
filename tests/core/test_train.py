import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bitlatent.core.binary import unpack_bits
from bitlatent.core.latents import LatentTable
from bitlatent.core.image_quality import psnr, to_unit_images
from bitlatent.core.train import (
    FIT_CHECKPOINT,
    PRETRAIN_CHECKPOINT,
    decode_packed,
    fit_latents,
    pretrain,
)

# tiny decoders vs a handful of tiny latents: the capacity warning is expected here
pytestmark = pytest.mark.filterwarnings("ignore::bitlatent.core.capacity.CapacityWarning")


class Interrupt(Exception):
    pass


def _interrupt_at(step_to_fail: int):
    def callback(step, record):
        if step == step_to_fail:
            raise Interrupt
    return callback


def _state(result):
    return {k: v.clone() for k, v in result.decoder.state_dict().items()}


def test_pretrain_lowers_loss_and_reaches_psnr_floor(images, tiny_decoder_config, tiny_train_config):
    cfg = replace(tiny_train_config, epochs=40)
    result = pretrain(images[:16], tiny_decoder_config, cfg)
    c = result.curves
    assert len(c["step"]) == 40 * 2 and c["step"][-1] == 80
    assert set(c) >= {"step", "loss", "psnr", "wall_time", "hardness"}
    first, last = np.mean(c["loss"][:2]), np.mean(c["loss"][-2:])
    assert last < 0.5 * first
    recon = decode_packed(result.decoder, result.latents.packed())  # the stored bits, decoded
    train_psnr = psnr(to_unit_images(recon), to_unit_images(images[:16]))
    assert train_psnr > 16.5  # measured 17.7 dB (64 bits for a 16x16 image)
    # new images: fitting latents with the frozen decoder beats their mean colour
    fit = fit_latents(result.decoder, images, cfg, indices=np.arange(24, 40))
    flat = images[24:40].reshape(16, -1, 3).astype(np.float64) / 255
    mean_colour_mse = ((flat - flat.mean(1, keepdims=True)) ** 2).mean()
    assert fit.psnr > 10 * np.log10(1 / mean_colour_mse) + 3.0  # mean colour: 13.1 dB
    assert fit.psnr > 16.0  # measured 17.5 dB


def test_fit_output_matches_decoding_and_keep_best(images, tiny_decoder_config, tiny_train_config):
    dec = pretrain(images[:16], tiny_decoder_config, tiny_train_config).decoder
    best = fit_latents(dec, images, tiny_train_config, indices=np.arange(20, 33))  # 13 images: chunks of 8 + 5
    assert best.packed.shape == (13, best.spec.bytes_per_image) and best.packed.dtype == np.uint8
    assert len(best.curves["step"]) == 2 * tiny_train_config.fit_steps
    recon = to_unit_images(decode_packed(dec, best.packed))
    per_image = ((recon - to_unit_images(images[20:33])) ** 2).flatten(1).mean(1).double().numpy()
    np.testing.assert_allclose(per_image, best.mse, atol=2e-4)  # uint8 rounding of the decoded image
    # keep best: each image's bits are the best hard bits seen along the trajectory, so a chunk's
    # mean MSE is at most that of the bits of any of its steps (the curve's loss)
    steps = tiny_train_config.fit_steps
    for c, (lo, hi) in enumerate([(0, 8), (8, 13)]):
        along = best.curves["loss"][c * steps : (c + 1) * steps]
        assert best.mse[lo:hi].mean() <= min(along) + 1e-6
    assert set(best.curves["hardness"]) == {1.0}  # hard bits from the first step
    assert dec.training is False and all(p.requires_grad for p in dec.parameters())


def test_pretrain_resume_after_interruption_is_exact(tmp_path, images, tiny_decoder_config, tiny_train_config):
    full = pretrain(images[:16], tiny_decoder_config, tiny_train_config, checkpoint_dir=tmp_path / "a")
    with pytest.raises(Interrupt):  # dies at step 13; last checkpoint at step 10
        pretrain(images[:16], tiny_decoder_config, tiny_train_config, checkpoint_dir=tmp_path / "b",
                 callback=_interrupt_at(13))  # fmt: skip
    assert not list((tmp_path / "b").glob("*.tmp")) and not list((tmp_path / "b").glob(".*.tmp"))
    resumed = pretrain(images[:16], tiny_decoder_config, tiny_train_config, checkpoint_dir=tmp_path / "b")
    for k, v in _state(full).items():
        torch.testing.assert_close(resumed.decoder.state_dict()[k], v, rtol=0, atol=0)
    for k, v in full.latents.state_dict().items():
        torch.testing.assert_close(resumed.latents.state_dict()[k], v, rtol=0, atol=0)
    assert resumed.curves["step"] == full.curves["step"]
    assert resumed.curves["loss"] == full.curves["loss"]
    # a finished run returns its result without training again
    again = pretrain(images[:16], tiny_decoder_config, tiny_train_config, checkpoint_dir=tmp_path / "b",
                     callback=_interrupt_at(1))  # fmt: skip
    np.testing.assert_array_equal(again.latents.packed(), full.latents.packed())


def test_resume_refuses_another_runs_checkpoint(tmp_path, images, tiny_decoder_config, tiny_train_config):
    cfg = replace(tiny_train_config, epochs=1)
    pretrain(images[:16], tiny_decoder_config, cfg, checkpoint_dir=tmp_path)
    assert (tmp_path / PRETRAIN_CHECKPOINT).exists()
    with pytest.raises(ValueError, match="another run"):
        pretrain(images[:16], tiny_decoder_config, replace(cfg, latent_lr=0.01), checkpoint_dir=tmp_path)
    # run-time settings may change between a run and its resumption
    pretrain(images[:16], tiny_decoder_config, replace(cfg, checkpoint_every=3, progress=False), checkpoint_dir=tmp_path)


@pytest.mark.parametrize("fail_at", [7, 23, 30])  # inside chunk 0; inside chunk 1; at the end of chunk 1
def test_fit_resume_after_interruption_is_exact(tmp_path, images, tiny_decoder_config, tiny_train_config, fail_at):
    dec = pretrain(images[:8], tiny_decoder_config, replace(tiny_train_config, epochs=2)).decoder
    cfg = replace(tiny_train_config, fit_steps=15, checkpoint_every=4)
    full = fit_latents(dec, images, cfg, indices=np.arange(20, 40), checkpoint_dir=tmp_path / "a")
    with pytest.raises(Interrupt):
        fit_latents(dec, images, cfg, indices=np.arange(20, 40), checkpoint_dir=tmp_path / "b", callback=_interrupt_at(fail_at))
    resumed = fit_latents(dec, images, cfg, indices=np.arange(20, 40), checkpoint_dir=tmp_path / "b")
    np.testing.assert_array_equal(resumed.packed, full.packed)
    np.testing.assert_array_equal(resumed.mse, full.mse)
    assert resumed.curves["loss"] == full.curves["loss"] and resumed.curves["step"] == list(map(float, range(1, 46)))
    assert (tmp_path / "b" / FIT_CHECKPOINT).exists()


def test_fit_reads_a_memmap(tmp_path, images, tiny_decoder_config, tiny_train_config):
    np.save(tmp_path / "shard.npy", images)
    shard = np.load(tmp_path / "shard.npy", mmap_mode="r")
    dec = pretrain(shard, tiny_decoder_config, replace(tiny_train_config, epochs=1), indices=np.arange(8)).decoder
    fit = fit_latents(dec, shard, replace(tiny_train_config, fit_steps=3))
    assert fit.packed.shape == (40, 8)
    bits = unpack_bits(fit.packed, fit.spec)
    assert bits.shape == (40, 4, 4, 4) and set(np.unique(bits)) <= {0, 1}


def test_bad_images_are_rejected(tiny_decoder_config, tiny_train_config):
    with pytest.raises(ValueError):
        pretrain(np.zeros((4, 16, 16, 3), np.float32), tiny_decoder_config, tiny_train_config)
    with pytest.raises(ValueError):
        pretrain(np.zeros((4, 32, 32, 3), np.uint8), tiny_decoder_config, tiny_train_config)


_KILL_SCRIPT = """
import sys, numpy as np, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
from conftest import synthetic_images
from bitlatent.core.decoder import DecoderConfig
from bitlatent.core.train import TrainConfig, pretrain
cfg = TrainConfig(**{cfg!r})
dec = DecoderConfig(**{dec!r})
pretrain(synthetic_images(40, seed=0)[:16], dec, cfg, checkpoint_dir={ckpt!r}, callback=lambda s, r: print(s, flush=True))
"""


def test_resume_after_sigkill(tmp_path, images, tiny_decoder_config, tiny_train_config):
    """A real kill (SIGKILL, no cleanup) between checkpoints: the resumed run ends where an uninterrupted one does."""
    cfg = replace(tiny_train_config, epochs=40, checkpoint_every=3)
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), cfg=cfg.to_dict(), dec=tiny_decoder_config.to_dict(),
                                 ckpt=str(tmp_path / "killed"))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:  # let it pass a few checkpoints, then kill it mid-interval
            if int(line) >= 8:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resumed = pretrain(images[:16], tiny_decoder_config, cfg, checkpoint_dir=tmp_path / "killed")
    assert 0 < resumed.curves["wall_time"][0] and len(resumed.curves["step"]) == 80
    full = pretrain(images[:16], tiny_decoder_config, cfg)
    for k, v in _state(full).items():  # another process: allow for thread-count dependent summation order
        torch.testing.assert_close(resumed.decoder.state_dict()[k], v, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(resumed.curves["loss"], full.curves["loss"], rtol=1e-4)
    assert (resumed.latents.packed() == full.latents.packed()).mean() > 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_mixed_precision_smoke(images, tiny_decoder_config, tiny_train_config):
    cfg = replace(tiny_train_config, device="cuda", amp=True, epochs=10)
    result = pretrain(images[:16], tiny_decoder_config, cfg)
    assert next(result.decoder.parameters()).is_cuda
    assert np.mean(result.curves["loss"][-2:]) < np.mean(result.curves["loss"][:2])
    fit = fit_latents(result.decoder, images, cfg, indices=np.arange(24, 40))
    assert np.isfinite(fit.mse).all() and fit.packed.shape == (16, 8)


def test_cpu_bf16_autocast_runs(images, tiny_decoder_config, tiny_train_config, monkeypatch):
    from bitlatent.core import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # the bf16 path on every CPU (tiny: emulated is fine)
    assert runtime.Runtime(replace(tiny_train_config, cpu_bf16=True)).amp_dtype == torch.bfloat16
    cfg = replace(tiny_train_config, cpu_bf16=True, epochs=3, fit_steps=4)
    result = pretrain(images[:16], tiny_decoder_config, cfg)
    fit = fit_latents(result.decoder, images, cfg, indices=np.arange(24, 32))
    assert np.isfinite(result.curves["loss"]).all() and np.isfinite(fit.mse).all()


def test_fit_from_given_bits(images, tiny_decoder_config, tiny_train_config):
    dec = pretrain(images[:16], tiny_decoder_config, replace(tiny_train_config, epochs=4)).decoder
    first = fit_latents(dec, images, tiny_train_config, indices=np.arange(24, 34))
    same = fit_latents(dec, images, replace(tiny_train_config, fit_steps=0), indices=np.arange(24, 34), init_packed=first.packed)
    np.testing.assert_array_equal(same.packed, first.packed)
    np.testing.assert_allclose(same.mse, first.mse, rtol=1e-6)
    refined = fit_latents(dec, images, tiny_train_config, indices=np.arange(24, 34), init_packed=first.packed)
    assert refined.psnr >= first.psnr - 0.05
    with pytest.raises(ValueError):
        fit_latents(dec, images, tiny_train_config, indices=np.arange(24, 34), init_packed=first.packed[:5])


def test_shared_init_gives_alike_images_alike_bits(images, tiny_decoder_config, tiny_train_config):
    """With one starting pattern, the same image fitted twice ends in the same bits: bits are a
    function of the image, which is what lets text predict them."""
    cfg = tiny_train_config
    dec = pretrain(images[:16], tiny_decoder_config, replace(cfg, epochs=4)).decoder
    twice = np.concatenate([images[24:26], images[24:26]])  # rows 0, 1 again as rows 2, 3
    fit = fit_latents(dec, twice, cfg)
    assert np.array_equal(fit.packed[:2], fit.packed[2:])


def test_rate_weight_keeps_bits_on_the_starting_pattern_at_a_price_in_mse(images, tiny_decoder_config, tiny_train_config):
    """The rate term moves a bit off the shared starting pattern only where the image pays for it:
    with a weight, more bits stay on the pattern (what an entropy model and the prior exploit) and
    the reconstruction can only get worse; pretraining takes the same term."""
    cfg = tiny_train_config
    dec = pretrain(images[:16], tiny_decoder_config, replace(cfg, epochs=4)).decoder
    reference = LatentTable(1, dec.latent_spec, init_std=cfg.fit_init_std, seed=cfg.seed + 1).reference > 0  # (1, C, h, w)

    def on_pattern(fit) -> float:
        return float((unpack_bits(fit.packed, fit.spec).astype(bool) == reference.numpy()).mean())

    free = fit_latents(dec, images, cfg, indices=np.arange(24, 34))
    priced = fit_latents(dec, images, replace(cfg, rate_weight=0.05), indices=np.arange(24, 34))
    assert on_pattern(priced) > on_pattern(free) + 0.1
    assert priced.psnr < free.psnr
    joint = pretrain(images[:16], tiny_decoder_config, replace(cfg, epochs=4, rate_weight=0.05))
    assert float((unpack_bits(joint.latents.packed(), joint.decoder.latent_spec).astype(bool)
                  == reference.numpy()).mean()) > on_pattern(free)
