"""Prompts -> token ids with the `tokenizers` library alone (no torch, no transformers).

Tokenisation is exactly ``bitlatent.text.encoder.TextEncoder.tokenize``: MiniLM's wordpieces
wrapped in [CLS] ... [SEP], padding and truncation done here (not by ``tokenizer.json``'s own
settings), so that truncation can be counted and reported. A prompt longer than ``max_length``
tokens keeps its first ``max_length - 1`` tokens and its [SEP]. The export checks that both
tokenisers give the same ids.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["validate_prompts", "cut_and_pad", "Tokenized", "PromptTokenizer"]


def validate_prompts(prompts: str | Sequence[str]) -> list[str]:
    """A prompt or a list of prompts -> a list; empty or whitespace-only is a ``ValueError``."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompt given: pass at least one non-empty prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is {type(p).__name__}, not str")
        if not p.strip():
            raise ValueError(f"prompt {i} is empty or whitespace only: describe the image in words, e.g. 'a red circle'")
    return prompts


def cut_and_pad(ids: list[list[int]], prompts: Sequence[str], max_length: int, sep_id: int, pad_id: int,
                warn: bool = True, stacklevel: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Token ids per prompt -> ``input_ids``, ``attention_mask`` int64 (N, L), L the longest kept.

    A prompt over ``max_length`` tokens keeps its first ``max_length - 1`` and ends in [SEP]; when
    ``warn``, one ``UserWarning`` says how many were cut. Shared by the ONNX and the torch paths."""
    ids = [list(x) for x in ids]
    too_long = [i for i, x in enumerate(ids) if len(x) > max_length]
    if too_long and warn:
        warnings.warn(
            f"{len(too_long)} of {len(ids)} prompt(s) longer than {max_length} tokens were truncated "
            f"(longest: {max(len(ids[i]) for i in too_long)} tokens; first: {prompts[too_long[0]][:60]!r})",
            UserWarning,
            stacklevel=stacklevel,
        )
    for i in too_long:
        ids[i] = ids[i][: max_length - 1] + [sep_id]
    L = max(len(x) for x in ids)
    input_ids = np.full((len(ids), L), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), L), dtype=np.int64)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return input_ids, mask


@dataclass
class Tokenized:
    input_ids: np.ndarray
    """int64 (N, L): [CLS] wordpieces [SEP], then [PAD]; L = the longest prompt, <= max_length."""
    attention_mask: np.ndarray
    """int64 (N, L): 1 on real tokens, 0 on padding."""
    lengths: np.ndarray
    """int64 (N,): tokens of each prompt before truncation ([CLS] and [SEP] included)."""
    max_length: int

    @property
    def truncated(self) -> np.ndarray:
        """bool (N,): prompts that were cut to ``max_length`` tokens."""
        return self.lengths > self.max_length


class PromptTokenizer:
    """``tokenizer.json`` -> (input_ids, attention_mask) as int64 numpy arrays."""

    def __init__(self, path: str | Path, max_length: int, pad_id: int | None = None, sep_id: int | None = None):
        from tokenizers import Tokenizer

        self.path = Path(path)
        self._tokenizer = Tokenizer.from_file(str(self.path))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.max_length = int(max_length)
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.pad_id = int(pad_id if pad_id is not None else self._tokenizer.token_to_id("[PAD]"))
        self.sep_id = int(sep_id if sep_id is not None else self._tokenizer.token_to_id("[SEP]"))

    def count_tokens(self, prompts: Sequence[str]) -> list[int]:
        """Tokens of each prompt, [CLS] and [SEP] included, before any truncation."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(prompts))]

    def __call__(self, prompts: str | Sequence[str], warn: bool = True) -> Tokenized:
        """Validate and tokenize; over-long prompts are cut (with a ``UserWarning`` when ``warn``)."""
        prompts = validate_prompts(prompts)
        ids = [e.ids for e in self._tokenizer.encode_batch(prompts)]
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        input_ids, mask = cut_and_pad(ids, prompts, self.max_length, self.sep_id, self.pad_id, warn, stacklevel=4)
        return Tokenized(input_ids, mask, lengths, self.max_length)
