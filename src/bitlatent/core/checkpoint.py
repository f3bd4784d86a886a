"""Training checkpoints (``train.pretrain``, ``train.fit_latents``): one safetensors file written
atomically (temporary file + ``os.replace``) holding tensors (weights, optimiser moments, latent
table, curves as ``curve.<key>``) and JSON metadata under ``"state"`` (step, the run's identity,
optimiser param groups, scaler state). A checkpoint is resumed only by the run it belongs to:
``bitlatent.runs.RunIdentity.check`` compares the saved identity with the caller's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .io import atomic_save_tensors, load_tensors

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "optimizer_to_tensors",
    "optimizer_from_tensors",
    "subtable",
]


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's state as ``opt.<param>.<key>`` tensors + JSON-able metadata."""
    sd = opt.state_dict()
    tensors, keys = {}, {}
    for i, st in sd["state"].items():
        keys[str(i)] = sorted(st)
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"], "state_keys": keys}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of ``optimizer_to_tensors``."""
    state = {int(i): {k: tensors[f"opt.{i}.{k}"] for k in ks} for i, ks in meta["state_keys"].items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    path: Path, tensors: dict[str, torch.Tensor], curves: dict[str, list[float]], state: dict[str, Any]
) -> None:
    tensors = dict(tensors)
    for k, v in curves.items():
        tensors[f"curve.{k}"] = torch.tensor(v, dtype=torch.float64)
    state = {**state, "curve_keys": list(curves)}
    atomic_save_tensors(path, tensors, metadata={"state": json.dumps(state)})


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, list[float]], dict[str, Any]]:
    """``(tensors without the curves, curves, state)`` of a ``save_checkpoint`` file, on CPU."""
    tensors, metadata = load_tensors(path, device="cpu")
    state = json.loads(metadata["state"])
    curves = {k: tensors.pop(f"curve.{k}").tolist() for k in state["curve_keys"]}
    return tensors, curves, state


def subtable(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
