"""Decoder pretraining under ``torchrun``: the ``pretrain_decoder`` node on every rank.

    torchrun --nproc_per_node=4 -m bitlatent.pipelines.decoder_pretraining.distributed \\
        [--env k8s] [--params pretraining.train.epochs=40,...]

Every process joins the process group ``torchrun`` describes, loads the node's inputs from the
project's catalog (``--env``, ``--params`` as for ``kedro run``) and runs the node, so
``train.pretrain`` spreads the run over the processes (``core.distributed``): the same code, the
same checkpoint folder and resumption, and the same outputs as ``kedro run --pipelines
decoder_pretraining``, which rank 0 alone saves through the catalog. Checkpoints are written and
read by rank 0 only. Hooks are not run.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from bitlatent.core.distributed import ProcessGroup, init_from_env

__all__ = ["main", "parse_params"]

logger = logging.getLogger(__name__)


def parse_params(text: str | None) -> dict:
    """``kedro run --params`` syntax (``a.b=1,c=x``) -> a nested dict, values typed as YAML."""
    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    for item in items:
        if "=" not in item or not item.partition("=")[0].strip():
            raise ValueError(f"--params item {item!r} must be key=value")
    return OmegaConf.to_container(OmegaConf.from_dotlist(items)) if items else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Decoder pretraining over the processes of torchrun.")
    parser.add_argument("--env", default=None, help="Kedro configuration environment (as kedro run --env)")
    parser.add_argument("--params", default=None, help="runtime parameters (as kedro run --params)")
    parser.add_argument("--project", default=".", help="the Kedro project folder (default: the current one)")
    parser.add_argument("--backend", default=None, help="nccl (default with CUDA) or gloo (default on CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from bitlatent.pipelines.decoder_pretraining.pipeline import create_pipeline

    project = Path(args.project).resolve()
    bootstrap_project(project)
    use_cuda = args.backend != "gloo" and torch.cuda.is_available()
    joined = init_from_env(args.backend, use_cuda=use_cuda)
    try:
        group = ProcessGroup.current()
        with KedroSession.create(project_path=project, env=args.env, runtime_params=parse_params(args.params)) as session:
            catalog = session.load_context().catalog
            for node in create_pipeline().nodes:
                outputs = node.run({name: catalog.load(name) for name in node.inputs})
                if group.rank == 0:
                    for name, value in outputs.items():
                        catalog.save(name, value)
            logger.info("decoder_pretraining done on rank %d of %d", group.rank, group.world_size)
            group.barrier()
    finally:
        if joined:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
