"""Shared by every test: under pytest-xdist (``make test`` runs two workers), each worker gets
its share of the cores, so two workers on a 2-core machine do not each start two torch threads."""

from __future__ import annotations

import os


def pytest_configure(config) -> None:
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for the kedro / dvc subprocesses too

    import torch

    torch.set_num_threads(threads)
