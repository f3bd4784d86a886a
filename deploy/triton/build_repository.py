"""Build a Triton model repository from an exported ONNX bundle.

    python deploy/triton/build_repository.py --bundle data/06_models/onnx --out build/triton
    python deploy/triton/build_repository.py --bundle data/06_models/onnx --out build/triton --precision fp16

Copies the templates under ``deploy/triton/model_repository/`` (``config.pbtxt`` of decoder,
text_to_latent, tokenizer and the ``bitlatent`` ensemble, the tokenizer's ``1/model.py``), puts
``decoder.onnx`` / ``text_to_latent.onnx`` (or their fp16 variants: same inputs and outputs) at
``<model>/1/model.onnx`` and ``tokenizer.json`` beside the tokenizer's model.py, and rewrites
every dim from the bundle's manifest (latent grid, image size, code bits, max prompt tokens).
Each config is parsed and re-serialised with Triton's own ``model_config.proto``
(``tritonclient.grpc.model_config_pb2``) and checked against the ONNX graphs' inputs and outputs,
so a config that Triton would reject fails here. Upload the folder and point the Triton
InferenceService (deploy/kserve/triton-inferenceservice.yaml) at it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "model_repository"
ONNX_MODELS = {"decoder": "decoder", "text_to_latent": "text_to_latent"}  # triton model -> manifest model

# ONNX dtype names (as the manifest writes them) <-> Triton's DataType enum names
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8", "int64": "TYPE_INT64",
                "int32": "TYPE_INT32", "bool": "TYPE_BOOL", "bytes": "TYPE_STRING"}  # fmt: skip


_PB2: list = []


def model_config_pb2():
    """Triton's ``model_config.proto`` compiled (``tritonclient/grpc/model_config_pb2.py``), loaded
    from its file: importing ``tritonclient.grpc`` would also register Triton's ``inference.*``
    service messages, which clash with KServe's own in one process (protobuf's descriptor pool)."""
    if not _PB2:
        loaded = sys.modules.get("tritonclient.grpc.model_config_pb2")
        if loaded is None:
            spec = importlib.util.find_spec("tritonclient")
            if spec is None or spec.origin is None:
                raise ImportError("tritonclient is not installed: pip install 'tritonclient[http,grpc]'")
            path = Path(spec.origin).parent / "grpc" / "model_config_pb2.py"
            module_spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", path)
            loaded = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(loaded)
        _PB2.append(loaded)
    return _PB2[0]


def read_config(path: Path):
    """Parse a ``config.pbtxt`` into Triton's ``ModelConfig`` message (raises on any error)."""
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2().ModelConfig())


def write_config(config, path: Path, header: str = "") -> None:
    from google.protobuf import text_format

    path.write_text(header + text_format.MessageToString(config), encoding="utf-8")


def _comment_header(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def triton_dims(shape: list[Any], batched: bool) -> list[int]:
    """An ONNX shape (symbolic dims as strings) -> Triton dims: the batch dim dropped, -1 for the rest."""
    dims = shape[1:] if batched else shape
    return [d if isinstance(d, int) else -1 for d in dims]


def compare(config, graph: dict[str, list[dict[str, Any]]], where: str = "") -> list[str]:
    """Mismatches between a ``ModelConfig`` and an ONNX graph's io (``graph_io`` / the manifest):
    every config tensor must exist in the graph with the same type and (batch-less) dims."""
    pb2 = model_config_pb2()
    problems = []
    batched = config.max_batch_size > 0
    for kind, tensors in (("input", config.input), ("output", config.output)):
        onnx_tensors = {t["name"]: t for t in graph[kind + "s"]}
        if kind == "input" and {t.name for t in tensors} != set(onnx_tensors):
            problems.append(f"{where}: config inputs {sorted(t.name for t in tensors)} != ONNX inputs {sorted(onnx_tensors)}")
        for t in tensors:
            ref = onnx_tensors.get(t.name)
            if ref is None:
                problems.append(f"{where}: {kind} {t.name!r} is not in the ONNX graph ({sorted(onnx_tensors)})")
                continue
            want_type = TRITON_TYPES.get(ref["dtype"])
            got_type = pb2.DataType.Name(t.data_type)
            if got_type != want_type:
                problems.append(f"{where}: {kind} {t.name!r} is {got_type}, the ONNX graph has {ref['dtype']} ({want_type})")
            if batched and (not ref["shape"] or isinstance(ref["shape"][0], int)):
                problems.append(f"{where}: {kind} {t.name!r}: max_batch_size > 0 needs a dynamic first dim, ONNX has {ref['shape']}")
            want = triton_dims(ref["shape"], batched)
            if list(t.dims) != want:
                problems.append(f"{where}: {kind} {t.name!r} dims {list(t.dims)}, the ONNX graph gives {want}")
    return problems


def _set_dims(tensors, dims: dict[str, list[int]]) -> None:
    for t in tensors:
        if t.name in dims:
            del t.dims[:]
            t.dims.extend(dims[t.name])


def build(bundle: Path, out: Path, precision: str = "fp32", verify: bool = True) -> dict[str, Any]:
    """Write the repository into ``out`` (replaced if present); returns the parsed configs by model."""
    sys.path.insert(0, str(HERE.parents[1] / "src"))  # bitlatent.inference, when not installed
    from bitlatent.inference.bundle import read_manifest

    manifest = read_manifest(bundle, verify=verify)
    suffix = "_fp16" if precision == "fp16" else ""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(TEMPLATES, out, ignore=shutil.ignore_patterns("__pycache__", ".gitkeep"))
    (out / "bitlatent" / "1").mkdir(exist_ok=True)  # the ensemble's (empty) version folder
    configs, problems = {}, []
    for triton_name, manifest_name in ONNX_MODELS.items():
        entry = manifest["models"][manifest_name + suffix]
        (out / triton_name / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle / entry["file"], out / triton_name / "1" / "model.onnx")
        path = out / triton_name / "config.pbtxt"
        config = read_config(path)
        io = {"inputs": entry["inputs"], "outputs": entry["outputs"]}
        dims = {t["name"]: triton_dims(t["shape"], config.max_batch_size > 0) for t in entry["inputs"] + entry["outputs"]}
        _set_dims(config.input, dims)
        _set_dims(config.output, dims)
        problems += compare(config, io, triton_name)
        write_config(config, path, _comment_header(TEMPLATES / triton_name / "config.pbtxt"))
        configs[triton_name] = config

    shutil.copyfile(bundle / manifest["tokenizer"]["file"], out / "tokenizer" / "1" / "tokenizer.json")
    tok_path = out / "tokenizer" / "config.pbtxt"
    tok = read_config(tok_path)
    tok.parameters["max_length"].string_value = str(manifest["max_prompt_tokens"])
    write_config(tok, tok_path, _comment_header(TEMPLATES / "tokenizer" / "config.pbtxt"))
    configs["tokenizer"] = tok

    ens_path = out / "bitlatent" / "config.pbtxt"
    ens = read_config(ens_path)
    image = next(t for t in manifest["models"]["decoder" + suffix]["outputs"] if t["name"] == "image")
    _set_dims(ens.output, {"image": triton_dims(image["shape"], True)})
    write_config(ens, ens_path, _comment_header(TEMPLATES / "bitlatent" / "config.pbtxt"))
    configs["bitlatent"] = ens
    problems += check_ensemble(configs)
    if problems:
        raise ValueError("the Triton configs do not match the exported models:\n  " + "\n  ".join(problems))
    (out / "bundle_manifest.json").write_text(json.dumps({"bundle": str(bundle), "precision": precision,
                                                          "files": manifest["files"]}, indent=2))  # fmt: skip
    return configs


def check_ensemble(configs: dict[str, Any]) -> list[str]:
    """Each ensemble step maps existing tensors with equal types, and the chain is connected."""
    pb2 = model_config_pb2()
    problems = []
    ens = configs["bitlatent"]
    available = {t.name: (t.data_type, list(t.dims)) for t in ens.input}
    for step in ens.ensemble_scheduling.step:
        model = configs.get(step.model_name)
        if model is None:
            problems.append(f"ensemble step {step.model_name!r}: no such model in the repository")
            continue
        if model.max_batch_size < ens.max_batch_size:
            problems.append(f"ensemble max_batch_size {ens.max_batch_size} > {step.model_name}'s {model.max_batch_size}")
        inputs = {t.name: t for t in model.input}
        for model_input, tensor in step.input_map.items():
            if model_input not in inputs:
                problems.append(f"ensemble step {step.model_name}: no input {model_input!r}")
            elif tensor not in available:
                problems.append(f"ensemble step {step.model_name}: tensor {tensor!r} is not produced before it")
            elif available[tensor][0] != inputs[model_input].data_type:
                problems.append(f"ensemble step {step.model_name}: {tensor!r} is {pb2.DataType.Name(available[tensor][0])}, "
                                f"{model_input!r} wants {pb2.DataType.Name(inputs[model_input].data_type)}")  # fmt: skip
        if set(step.input_map) != set(inputs):
            problems.append(f"ensemble step {step.model_name}: inputs {sorted(inputs)} not all mapped ({sorted(step.input_map)})")
        outputs = {t.name: t for t in model.output}
        for model_output, tensor in step.output_map.items():
            if model_output not in outputs:
                problems.append(f"ensemble step {step.model_name}: no output {model_output!r}")
            else:
                available[tensor] = (outputs[model_output].data_type, list(outputs[model_output].dims))
    for t in ens.output:
        if t.name not in available:
            problems.append(f"ensemble output {t.name!r} is produced by no step")
        elif available[t.name] != (t.data_type, list(t.dims)):
            problems.append(f"ensemble output {t.name!r}: {available[t.name]} from the steps, {(t.data_type, list(t.dims))} declared")
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path("data/06_models/onnx"))
    parser.add_argument("--out", type=Path, default=Path("build/triton"))
    parser.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    args = parser.parse_args(argv)
    configs = build(args.bundle, args.out, args.precision)
    print(f"wrote {args.out} ({', '.join(sorted(configs))}, {args.precision})")


if __name__ == "__main__":
    main()
