"""Static checks of the image recipe and the manifests (no Docker engine, no cluster here)."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib

import yaml

from bitlatent.kubeflow.compiler import read_components
from tests.kubeflow.conftest import GPU_PIPELINES
from tests.tiny_project import PROJECT

DOCKERFILE = PROJECT / "deploy" / "docker" / "Dockerfile.pipeline"
DEPLOY = PROJECT / "deploy" / "kubeflow"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def _ignore_patterns() -> list[str]:
    lines = (PROJECT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str) -> bool:
    """Docker's rule: the last pattern that matches decides, and a ``!pattern`` re-includes."""
    ignored = False
    for pattern in _ignore_patterns():
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/"):
            ignored = not negated
    return ignored


def test_dockerfile_uses_a_cuda_base_python_311_and_the_gpu_extra():
    instructions = _instructions()
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "cudnn" in args["CUDA_IMAGE"]
    assert ("FROM", "${CUDA_IMAGE}") in instructions
    assert args["EXTRA"] == "gpu"
    assert "/cpu" not in args["TORCH_INDEX_URL"] and "cu1" in args["TORCH_INDEX_URL"]
    runs = " ".join(a for op, a in instructions if op == "RUN")
    assert "python3.11 -m venv" in runs
    assert '--extra-index-url "${TORCH_INDEX_URL}"' in runs
    assert 'pip install --no-deps ".[${EXTRA}]"' in runs
    assert "torch.version.cuda" in runs and "CUDAExecutionProvider" in runs


def test_dockerfile_runs_kedro_as_a_non_root_user():
    instructions = _instructions()
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    (user,) = [a for op, a in instructions if op == "USER"]
    uid = user.split(":")[0].replace("${UID}", args["UID"])
    assert uid.isdigit() and int(uid) >= 1000
    assert [op for op, _ in instructions][-2:] == ["ENTRYPOINT", "CMD"]
    assert dict(instructions)["ENTRYPOINT"] == '["kedro"]'
    assert dict(instructions)["CMD"] == '["run", "--env", "k8s"]'


def test_requirements_one_liner_reads_the_real_pyproject():
    # The same expression as the Dockerfile's first install step.
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    code = ("import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; "
            "print('\\n'.join(p['dependencies'] + p['optional-dependencies']['gpu']))")
    assert code.split(";")[0] in DOCKERFILE.read_text()
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == project["dependencies"] + project["optional-dependencies"]["gpu"]
    assert any(line.startswith("torch==") for line in out)
    assert not any(line.startswith("onnxruntime==") for line in out)  # the CPU build


def test_dockerignore_keeps_the_context_small_and_free_of_secrets():
    for path in (".venv", ".venv/bin/python", "data", "data/03_primary/pairs.parquet", ".git",
                 "conf/local", "conf/local/credentials.yml", ".pytest_cache",
                 "src/bitlatent/__pycache__/x.pyc", "build", "dist"):
        assert _ignored(path), path
    copied = [a.split()[0] for op, a in _instructions() if op == "COPY"]
    for path in copied:
        assert (PROJECT / path).exists() and not _ignored(path), path
    assert not _ignored("conf/k8s/catalog.yml") and not _ignored("conf/base/catalog.yml")


def test_manifests_parse_and_agree_with_the_compile_defaults():
    volume = list(yaml.safe_load_all((DEPLOY / "shared-volume.yaml").read_text()))
    pvc = next(d for d in volume if d["kind"] == "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == "bitlatent-shared"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    secret = yaml.safe_load((DEPLOY / "storage-secret.example.yaml").read_text())
    assert secret["metadata"]["name"] == "bitlatent-storage"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["stringData"])
    components = read_components(DEPLOY / "resources.example.yml")
    # the example keeps GPUs on the pipelines that train on one (evaluation and export do not)
    assert {name for name, c in components.items() if c.accelerators} == GPU_PIPELINES
    assert components["evaluation"].memory_limit == "64Gi"
