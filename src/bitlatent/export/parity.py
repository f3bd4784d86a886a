"""ONNX Runtime against torch on fresh random inputs; the export fails when they disagree.

* decoder: random bits at batch 1 and ``parity_batch``; max |ONNX - torch| of the float images
  must be <= ``image_tolerance`` (uint8 pixels may differ by 1 where a value sits on a rounding
  boundary; reported, not judged).
* int8 decoder: PSNR of its float images against torch's over latents it was not calibrated on
  must be >= ``min_psnr`` dB (quantisation error is noise-like: a PSNR says how much it costs).
* text model: random wordpiece prompts of random lengths, padded, at two batch sizes (and
  sequence lengths unlike the export's example); the fraction of predicted bits, and of text-code
  bits, that agree must be >= ``bit_agreement``; max |logit difference| is reported.
* cell prior (the caption's context once, then one cached step per call): every step of random
  latents, teacher-forced, on each side's own caches; max |cell logit difference| <=
  ``prior_tolerance`` and the same most likely value for every cell.
* tokenizer: the bundle's ``tokenizer.json`` read by `tokenizers` gives the same ids as the
  torch path's tokenizer on a set of prompts (long, Unicode, odd spacing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["ParityError", "ParityResult", "decoder_parity", "decoder_psnr_parity", "prior_parity", "text_parity", "tokenizer_parity", "PARITY_PROMPTS"]

PARITY_PROMPTS = [
    "a small red circle in the top left corner",
    "there is a blue square at the upper right, and a green triangle below it",
    "  Ünïcödé — prompt with odd   spacing and emoji 🎨  ",
    "a " + "very " * 80 + "long prompt that runs past the token limit",
    "x",
]


class ParityError(RuntimeError):
    """ONNX Runtime and torch disagree beyond the configured tolerance."""


@dataclass
class ParityResult:
    name: str
    metrics: dict[str, Any]
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, **self.metrics, "message": self.message}


def _session(path: Path):
    """A CPU session: parity is judged against torch on the CPU, where both are deterministic."""
    import onnxruntime as ort

    from bitlatent.inference.providers import open_session

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return open_session(path, options, "cpu")[0]


def decoder_parity(wrapper: torch.nn.Module, path: Path, batch: int, rng: np.random.Generator,
                   tolerance: float, name: str = "decoder") -> ParityResult:  # fmt: skip
    """``wrapper`` is the ``DecoderForExport`` that was exported to ``path``."""
    session = _session(path)
    shape = tuple(int(d) for d in session.get_inputs()[0].shape[1:])
    worst, worst_u8, total = 0.0, 0, 0
    for b in (1, batch):
        bits = rng.integers(0, 2, size=(b, *shape), dtype=np.uint8)
        image_u8, image = session.run(["image", "image_float"], {"bits": bits})
        with torch.no_grad():
            ref_u8, ref = wrapper(torch.from_numpy(bits))
        if image.shape != tuple(ref.shape) or image_u8.shape != tuple(ref_u8.shape):
            raise ParityError(f"{name}: ONNX shapes {image.shape}/{image_u8.shape}, torch {tuple(ref.shape)}/{tuple(ref_u8.shape)}")
        worst = max(worst, float(np.abs(image.astype(np.float64) - ref.double().numpy()).max()))
        worst_u8 = max(worst_u8, int(np.abs(image_u8.astype(np.int16) - ref_u8.numpy().astype(np.int16)).max()))
        total += b
    passed = worst <= tolerance
    message = (f"{name}: max |ONNX - torch| = {worst:.3g} over {total} random latents "
               f"({'<=' if passed else '>'} {tolerance:g}); uint8 pixels differ by at most {worst_u8}")  # fmt: skip
    return ParityResult(name, {"max_abs_image": worst, "max_abs_uint8": worst_u8, "images": total,
                               "tolerance": tolerance}, passed, message)  # fmt: skip


def decoder_psnr_parity(wrapper: torch.nn.Module, path: Path, bits: np.ndarray, min_psnr: float,
                        name: str = "decoder_int8", batch: int = 64) -> ParityResult:  # fmt: skip
    """PSNR (dB, peak 1) of the ONNX graph at ``path`` against ``wrapper`` (the ``DecoderForExport``
    it approximates) over ``bits``, uint8 (M, C, h, w)."""
    session = _session(path)
    squared, values, worst_u8 = 0.0, 0, 0
    for lo in range(0, len(bits), batch):
        chunk = np.ascontiguousarray(bits[lo : lo + batch])
        image_u8, image = session.run(["image", "image_float"], {"bits": chunk})
        with torch.no_grad():
            ref_u8, ref = wrapper(torch.from_numpy(chunk))
        squared += float(((image.astype(np.float64) - ref.double().numpy()) ** 2).sum())
        values += image.size
        worst_u8 = max(worst_u8, int(np.abs(image_u8.astype(np.int16) - ref_u8.numpy().astype(np.int16)).max()))
    mse = squared / max(values, 1)
    psnr = float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))
    passed = psnr >= min_psnr
    message = (f"{name}: {psnr:.2f} dB PSNR against torch over {len(bits)} latents "
               f"({'>=' if passed else '<'} {min_psnr:g} dB); uint8 pixels differ by at most {worst_u8}")  # fmt: skip
    return ParityResult(name, {"psnr_db": psnr, "max_abs_uint8": worst_u8, "images": int(len(bits)),
                               "min_psnr_db": min_psnr}, passed, message)  # fmt: skip


def random_token_batch(rng: np.random.Generator, batch: int, max_length: int, vocab_size: int,
                       pad_id: int, cls_id: int, sep_id: int, first_word_id: int = 999) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Random wordpiece prompts: [CLS] + random ids + [SEP], random lengths (one is max_length), padded."""
    lengths = rng.integers(3, max_length + 1, size=batch)
    lengths[0] = max_length
    L = int(lengths.max())
    ids = np.full((batch, L), pad_id, dtype=np.int64)
    mask = np.zeros((batch, L), dtype=np.int64)
    for i, n in enumerate(lengths):
        ids[i, 0], ids[i, n - 1] = cls_id, sep_id
        ids[i, 1 : n - 1] = rng.integers(first_word_id, vocab_size, size=n - 2)
        mask[i, :n] = 1
    return ids, mask


def text_parity(wrapper: torch.nn.Module, path: Path, batch: int, rng: np.random.Generator, agreement: float,
                max_length: int, vocab_size: int, pad_id: int, cls_id: int, sep_id: int,
                name: str = "text_to_latent", token_tolerance: float = 1e-3) -> ParityResult:  # fmt: skip
    """``wrapper`` is the ``TextForExport`` that was exported to ``path``; with a cell prior, its
    ``prior_tokens`` must also agree within ``token_tolerance`` (max abs, real tokens)."""
    session = _session(path)
    has_prior = "prior_tokens" in [o.name for o in session.get_outputs()]
    agree = total = code_agree = code_total = 0
    worst = worst_tokens = 0.0
    cases = [(batch, max_length), (1, max(3, max_length // 3))]
    for b, length in cases:
        ids, mask = random_token_batch(rng, b, length, vocab_size, pad_id, cls_id, sep_id)
        outputs = ["bit_logits", "bits", "code_bits"] + (["prior_tokens"] if has_prior else [])
        logits, bits, codes, *tokens = session.run(outputs, {"input_ids": ids, "attention_mask": mask})
        with torch.no_grad():
            ref_logits, ref_bits, ref_codes, *ref_tokens = wrapper(torch.from_numpy(ids), torch.from_numpy(mask))
        if has_prior:
            real = mask.astype(bool)  # padded positions are never read by the prior
            worst_tokens = max(worst_tokens, float(np.abs(tokens[0] - ref_tokens[0].numpy())[real].max()))
        if bits.shape != tuple(ref_bits.shape) or codes.shape != tuple(ref_codes.shape):
            raise ParityError(f"{name}: ONNX shapes {bits.shape}/{codes.shape}, torch {tuple(ref_bits.shape)}/{tuple(ref_codes.shape)}")
        worst = max(worst, float(np.abs(logits.astype(np.float64) - ref_logits.double().numpy()).max()))
        agree += int((bits == ref_bits.numpy()).sum())
        total += bits.size
        code_agree += int((codes == ref_codes.numpy()).sum())
        code_total += codes.size
    bit_rate, code_rate = agree / total, code_agree / max(code_total, 1)
    passed = bit_rate >= agreement and code_rate >= agreement and worst_tokens <= token_tolerance
    message = (f"{name}: {bit_rate:.4%} of {total} latent bits and {code_rate:.4%} of {code_total} code bits "
               f"agree with torch (need >= {agreement:.2%}); max |logit difference| = {worst:.3g}")  # fmt: skip
    metrics = {"bit_agreement": bit_rate, "code_agreement": code_rate, "bits": total, "max_abs_logit": worst,
               "required": agreement}  # fmt: skip
    if has_prior:
        message += f"; prior_tokens max |difference| = {worst_tokens:.3g} (need <= {token_tolerance:g})"
        metrics["max_abs_prior_tokens"] = worst_tokens
    return ParityResult(name, metrics, passed, message)


def prior_parity(prior: torch.nn.Module, context_path: Path, path: Path, batch: int, rng: np.random.Generator,
                 tolerance: float, name: str = "prior") -> ParityResult:  # fmt: skip
    """``prior`` (a ``CellPrior``) exported to ``context_path`` (``prior_context.onnx``) and ``path``
    (``prior.onnx``, one cached step): from random token states (some prompts padded; with a "no
    caption" token, every other row without its caption) both sides compute the context once, then
    run every step of random latents, teacher-forced, each on its own caches (the ONNX side as
    ``OnnxGenerator`` does: ``PriorSession``); max |cell logit difference| must be <= ``tolerance``,
    and the most likely value of every cell must agree."""
    from bitlatent.inference.onnx_prior import PriorSession

    cfg = prior.config
    length = int(rng.integers(2, 12))
    tokens = rng.standard_normal((batch, length, cfg.width)).astype(np.float32)
    mask = np.ones((batch, length), dtype=np.int64)
    mask[1:, length // 2 :] = 0  # padded prompts after the first
    blocks = rng.integers(0, 2, size=(batch, cfg.num_steps, cfg.cells_per_step * cfg.bits_per_cell), dtype=np.uint8)
    uncaptioned = (np.arange(batch) % 2 == 1) if getattr(prior, "null", None) is not None else None
    ours = PriorSession(_session(context_path), _session(path), tokens, mask, uncaptioned)
    with torch.no_grad():
        ref_tokens, ref_mask = torch.from_numpy(tokens), torch.from_numpy(mask)
        if uncaptioned is not None:
            ref_tokens, ref_mask = prior.without_caption(ref_tokens, ref_mask, torch.from_numpy(uncaptioned))
        context = prior.context(ref_tokens, ref_mask)
        ref_keys, ref_values = prior.empty_cache(batch)
    worst, agree = 0.0, 0
    for t in range(cfg.num_steps):
        previous = np.ascontiguousarray(blocks[:, t - 1])
        logits = ours.step(t, previous)
        with torch.no_grad():
            ref, ref_key, ref_value = prior.step(torch.from_numpy(previous), torch.tensor([t]), ref_keys, ref_values, context)
            prior.store_step(ref_keys, ref_values, t, ref_key, ref_value)
        if logits.shape != tuple(ref.shape):
            raise ParityError(f"{name}: ONNX shape {logits.shape}, torch {tuple(ref.shape)}")
        worst = max(worst, float(np.abs(logits - ref.numpy()).max()))
        per_cell = logits.reshape(batch * cfg.cells_per_step, -1), ref.numpy().reshape(batch * cfg.cells_per_step, -1)
        agree += int((per_cell[0].argmax(-1) == per_cell[1].argmax(-1)).sum())
    rows = batch * cfg.num_cells
    passed = worst <= tolerance and agree == rows
    message = (f"{name}: max |cell logit difference| = {worst:.3g} over {cfg.num_steps} cached steps "
               f"({'<=' if worst <= tolerance else '>'} {tolerance:g}); most likely value agrees on {agree} of {rows} cells")  # fmt: skip
    return ParityResult(name, {"max_abs_logit": worst, "argmax_agreement": agree / rows, "cells": rows,
                               "tolerance": tolerance}, passed, message)  # fmt: skip


def tokenizer_parity(tokenizer_json: Path, reference, max_length: int, prompts: list[str] | None = None) -> ParityResult:
    """``reference(prompts, max_length) -> (input_ids, attention_mask)`` tensors (``TextEncoder.tokenize``)."""
    import warnings

    from bitlatent.inference.prompts import PromptTokenizer

    prompts = list(prompts or PARITY_PROMPTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long prompt is truncated on purpose
        ours = PromptTokenizer(tokenizer_json, max_length)(prompts)
        ref_ids, ref_mask = reference(prompts, max_length)
    same = (ours.input_ids.shape == tuple(ref_ids.shape) and np.array_equal(ours.input_ids, ref_ids.numpy())
            and np.array_equal(ours.attention_mask, ref_mask.numpy()))  # fmt: skip
    message = (f"tokenizer: {'same' if same else 'DIFFERENT'} ids for {len(prompts)} prompts "
               f"(tokenizers on {tokenizer_json.name} vs the torch path)")  # fmt: skip
    return ParityResult("tokenizer", {"prompts": len(prompts)}, same, message)
