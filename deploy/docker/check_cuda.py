"""The GPU images' check that ONNX Runtime really runs on CUDA, not only that it imports.

onnxruntime-gpu lists ``CUDAExecutionProvider`` whether or not the CUDA and cuDNN libraries it
loads are there, and a session asked for it then runs on the CPU. This script, run by the GPU
images' build (deploy/docker/Dockerfile.pipeline, Dockerfile.server-gpu) and again on a GPU node:

    docker run --rm --gpus all --entrypoint python IMAGE /opt/bitlatent/check_cuda.py --require-gpu

1. fails when ONNX Runtime lacks the CUDA provider or any CUDA / cuDNN library cannot be loaded
   (no GPU needed: a build machine rarely has one);
2. where a GPU is visible (``/dev/nvidia0``), or with ``--require-gpu``, opens a one-node ONNX
   session with ``providers=["CUDAExecutionProvider"]``, runs it and fails unless
   ``session.get_providers()`` starts with CUDA.

Needs onnxruntime(-gpu) and bitlatent.inference only (no torch, no onnx: the graph is
stored as bytes; tests/export/test_deploy.py rebuilds it with onnx).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnxruntime as ort

from bitlatent.inference.providers import CUDA, CUDA_LIBRARIES, missing_cuda_libraries

# A one-node ONNX graph, y = x + x over float32 [1, 4] (opset 13), serialised protobuf bytes:
# ModelProto{ir_version 7, graph{node Add(x, x) -> y, input x, output y}, opset 13}.
ADD_MODEL = bytes.fromhex(
    "08073a3f0a0e0a01780a0178120179220341646412036164645a130a0178120e0a0c080112080a0208010a0208"
    "0462130a0179120e0a0c080112080a0208010a02080442040a00100d"
)


def check(require_gpu: bool) -> str:
    if CUDA not in ort.get_available_providers():
        sys.exit(f"onnxruntime {ort.__version__} has no {CUDA}: is the CPU onnxruntime installed instead of onnxruntime-gpu?")
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()
    missing = missing_cuda_libraries()
    if missing:
        sys.exit(f"the CUDA provider cannot load {missing} (of {list(CUDA_LIBRARIES)}): the base image lacks CUDA or cuDNN")
    if not (require_gpu or os.path.exists("/dev/nvidia0")):
        return f"{CUDA} and its libraries load; no GPU visible, so no session opened (run with --gpus all --require-gpu)"
    session = ort.InferenceSession(ADD_MODEL, providers=[CUDA])
    used = session.get_providers()
    if not used or used[0] != CUDA:
        sys.exit(f"a session asked for {CUDA} runs on {used}")
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    (y,) = session.run(None, {"x": x})
    if not np.array_equal(y, x + x):
        sys.exit(f"the CUDA session computed {y}, not {x + x}")
    return f"a session runs on {used}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require-gpu", action="store_true", help="fail unless a CUDA session opens and runs")
    print(check(parser.parse_args().require_gpu))


if __name__ == "__main__":
    main()
