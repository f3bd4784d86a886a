"""Shared by every test: the end-to-end tier, the torch threads of each pytest-xdist worker, and the
tiny exported bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# The end-to-end tests, marked `e2e` here (one list, not a mark in each file): whole pipelines
# through Kedro, `dvc repro` of the project, the compiled Kubeflow pipeline replayed pod by pod,
# the server as a subprocess, benchmark scripts run whole, a real `kedro run` and a real
# two-process DDP run. `make test` runs them; `make test-fast` (-m "not e2e") is every other test, for the
# edit-test loop. An entry is a file under tests/, or "file::name" for the tests of that file
# whose names start with "name".
E2E = (
    "dvc/test_repro.py",
    "kubeflow/test_replay.py",
    "pipelines/test_model_pipelines.py",
    "serving/test_server.py",
    "benchmarks/test_harness.py::test_vae_comparison_runs_end_to_end",
    "benchmarks/test_harness.py::test_decoder_ceiling_scores_reconstructions_end_to_end",
    "benchmarks/test_gpu_check.py::test_without_a_gpu_it_runs_the_cpu_parts",
    "benchmarks/test_serving_load.py::test_no_5xx_and_every_bad_request",
    "kubeflow/test_k8s_catalog.py::test_kedro_run_with_env_k8s",
    "core/test_ddp.py::test_two_processes",
)


def pytest_configure(config) -> None:
    missing = [entry for entry in E2E if not (TESTS / entry.split("::")[0]).is_file()]
    if missing:  # a renamed file would otherwise drop into the fast tier unnoticed
        raise pytest.UsageError(f"tests/conftest.py E2E names missing files: {missing}")
    _share_the_cores()


def pytest_collection_modifyitems(config, items) -> None:
    modules = {}
    for item in items:
        path = Path(item.path).resolve().relative_to(TESTS).as_posix()
        modules[path] = getattr(item, "module", None)
        for entry in E2E:
            file, _, name = entry.partition("::")
            if path == file and item.name.startswith(name):
                item.add_marker(pytest.mark.e2e)
    unmatched = [entry for entry in E2E if "::" in entry and modules.get(entry.split("::")[0]) is not None
                 and not any(n.startswith(entry.split("::")[1]) for n in dir(modules[entry.split("::")[0]]))]
    if unmatched:  # a renamed test would otherwise drop into the fast tier unnoticed
        raise pytest.UsageError(f"tests/conftest.py E2E names tests that are not there: {unmatched}")


def _share_the_cores() -> None:
    """Under pytest-xdist (``make test`` runs two workers), each worker gets its share of the cores,
    so two workers on a 2-core machine do not each start two torch threads."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for the kedro / dvc subprocesses too

    import torch

    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny bundle (tests.export.tiny.TinyExport), exported once per session by the real export
    pipeline; tests/export, tests/inference and tests/serving use it."""
    from tests.export.tiny import tiny_export

    return tiny_export(tmp_path_factory)
