"""Shared fixtures for the text tests: the real MiniLM, loaded once per session (it is small)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def encoder():
    from bitlatent.text.encoder import load_text_encoder

    return load_text_encoder("cpu")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machines have 2 busy cores: one torch thread is faster there and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
