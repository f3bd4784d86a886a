"""A Kubeflow Pipelines (KFP v2) pipeline generated from the Kedro pipeline registry.

One container component per registered Kedro pipeline (``__default__`` left out), each
running ``kedro run --pipelines <name> --env <env>`` in the project image; a component runs
after the components whose datasets it reads (``dag.PipelineDag``). A pipeline with a
``shard_namespace`` (``latent_adaptation``) fans out with ``dsl.ParallelFor`` over shard
indices, each iteration getting ``--params <ns>.shard=<i>,<ns>.num_shards=<n>``.

``CompileOptions.gpu`` chooses between two coherent runs: GPUs requested on the pipelines that
train on one (``ComponentConfig.accelerators``) and the pods running ``--env k8s_gpu`` (the
cluster catalog with the GPU hyperparameters of ``conf/gpu``), or no GPU anywhere and
``--env k8s`` (the cluster catalog with conf/base's CPU-sized hyperparameters).

Data moves between pods through the cluster catalog (``conf/k8s``): object storage for
tables and JSON, a shared ``ReadWriteMany`` volume for datasets that need local files
(memory-mapped shards). KFP itself passes no artifacts, so its launcher writes nothing
into the container and the image can run as a non-root user.

Pipeline parameters at submit time: ``storage_root`` (the object-storage root the catalog
uses, default from ``conf/k8s/globals.yml``) and ``kedro_params`` (extra ``--params``
given to every component, e.g. ``data.format=coco,data.path=/mnt/bitlatent/01_raw/…``).
"""

# No `from __future__ import annotations`: KFP reads the component functions' annotations
# as types, not strings.
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bitlatent.kubeflow.dag import PipelineDag, load_registry, unshared_inputs

STORAGE_KEYS_REQUIRED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
STORAGE_KEYS_OPTIONAL = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")
CPU_ENV = "k8s"
"""Cluster catalog and roots (``conf/k8s``) over conf/base's CPU-sized parameters."""
GPU_ENV = "k8s_gpu"
"""``conf/k8s``'s catalog and roots with ``conf/gpu``'s parameters (its files link to both)."""


@dataclass
class ComponentConfig:
    """What one Kedro pipeline's pod asks of the cluster (Kubernetes quantities as strings)."""

    cpu_request: str = "2"
    """CPU cores reserved for the pod (``"500m"``, ``"2"``)."""
    cpu_limit: str = "4"
    """CPU cores the pod may use at most."""
    memory_request: str = "8Gi"
    """Memory reserved for the pod."""
    memory_limit: str = "16Gi"
    """Memory above which the pod is killed."""
    accelerators: int = 0
    """GPUs (of ``CompileOptions.accelerator_type``) per pod when ``CompileOptions.gpu``; 0
    asks for none."""
    shard_namespace: str | None = None
    """Fan out over shards: each iteration runs with ``<ns>.shard=i,<ns>.num_shards=n``."""
    params: dict[str, str] = field(default_factory=dict)
    """Extra ``--params`` for this pipeline; ``{shared_root}`` becomes the mount path of the
    shared volume. (Paths in object storage belong in ``conf/k8s``, which follows the
    ``storage_root`` run parameter.)"""


def default_components() -> dict[str, ComponentConfig]:
    """Per-pipeline defaults; the training stages (pretraining, adaptation, alignment) get a GPU each.

    Parameters that are local paths under ``data/`` (scratch, checkpoints) are moved to the
    shared volume here; ``tests/kubeflow`` checks that none is left on the pod's disk.
    """
    return {
        "data_validation": ComponentConfig(
            "2", "4", "8Gi", "16Gi",
            # Stage the shards on the shared volume: the commit is then one rename.
            params={"data.scratch_dir": "{shared_root}/02_intermediate/scratch"},
        ),
        "decoder_pretraining": ComponentConfig(
            "8", "8", "32Gi", "64Gi", accelerators=1,
            # Checkpoints must outlive the pod for a retried run to resume from them.
            params={"pretraining.checkpoint_root": "{shared_root}/06_models/checkpoints/pretraining"},
        ),
        "latent_adaptation": ComponentConfig(
            "4", "8", "16Gi", "32Gi", accelerators=1, shard_namespace="latent_adaptation"
        ),
        "alignment": ComponentConfig(
            "4", "8", "16Gi", "32Gi", accelerators=1,
            params={"alignment.feature_cache": "{shared_root}/04_feature/text_features",
                    "alignment.checkpoint_root": "{shared_root}/06_models/checkpoints/alignment"},
        ),
        "evaluation": ComponentConfig(
            "4", "8", "16Gi", "32Gi",
            # reads params:alignment and params:data too: their paths must not point at the pod's disk
            params={"alignment.feature_cache": "{shared_root}/04_feature/text_features",
                    "alignment.checkpoint_root": "{shared_root}/06_models/checkpoints/alignment",
                    "data.scratch_dir": "{shared_root}/02_intermediate/scratch"},
        ),
        "compression": ComponentConfig(
            "2", "4", "8Gi", "16Gi",  # a small model on the CPU
            params={"compression.feature_cache": "{shared_root}/04_feature/text_features",
                    "compression.checkpoint_root": "{shared_root}/06_models/checkpoints/compression"},
        ),
        "export": ComponentConfig("2", "4", "8Gi", "16Gi"),
    }


@dataclass
class CompileOptions:
    """Everything ``compile_pipeline`` decides at compile time."""

    image: str
    """Pipeline image (``deploy/docker/Dockerfile.pipeline``), e.g. ``registry/bitlatent:0.1.0``."""
    num_shards: int = 8
    """Iterations of each fanned-out pipeline (``latent_adaptation``)."""
    parallelism: int = 0
    """Iterations running at once (0: all); bounds the GPUs the fan-out takes."""
    gpu: bool = True
    """Request the components' GPUs (``ComponentConfig.accelerators``) and run the GPU settings
    (``--env k8s_gpu`` unless ``env`` says otherwise); False requests no GPU anywhere and runs
    ``--env k8s``."""
    env: str | None = None
    """Kedro configuration environment the components run with; None: ``GPU_ENV`` or
    ``CPU_ENV`` as ``gpu`` says."""
    storage_root: str | None = None
    """Default of the ``storage_root`` pipeline parameter; None: ``conf/<env>/globals.yml``."""
    shared_root: str | None = None
    """Where the shared volume is mounted; None: ``shared_root`` in ``conf/<env>/globals.yml``."""
    shared_pvc: str | None = "bitlatent-shared"
    """``ReadWriteMany`` PersistentVolumeClaim mounted at ``shared_root`` in every pod;
    None mounts nothing (then local-path datasets do not survive their pod)."""
    storage_secret: str | None = "bitlatent-storage"
    """Kubernetes Secret whose ``AWS_*`` keys become the pods' environment (s3fs reads
    them); None: rely on the pods' own identity (IRSA, Workload Identity)."""
    enable_caching: bool = False
    """KFP caching. Off by default: the data lives outside KFP, so KFP cannot see that an
    input changed and would skip a pipeline whose upstream data is new."""
    accelerator_type: str = "nvidia.com/gpu"
    """Resource name of the GPUs (``set_accelerator_type``)."""
    gpu_toleration: bool = True
    """Tolerate the ``nvidia.com/gpu`` taint that GPU node pools usually carry."""
    image_pull_secrets: tuple[str, ...] = ()
    """Secrets for a private registry."""
    components: dict[str, ComponentConfig] = field(default_factory=default_components)
    """Per-pipeline resources; pipelines not named here get ``fallback``."""
    fallback: ComponentConfig = field(default_factory=ComponentConfig)
    """Resources of a pipeline that ``components`` does not name."""
    excluded: tuple[str, ...] = ()
    """Registered pipelines to leave out (besides ``__default__``)."""
    pipeline_name: str = "bitlatent"
    """Name of the KFP pipeline."""

    def component(self, name: str) -> ComponentConfig:
        return self.components.get(name, self.fallback)

    @property
    def kedro_env(self) -> str:
        """The environment the pods run: ``env``, or the one that matches ``gpu``."""
        return self.env or (GPU_ENV if self.gpu else CPU_ENV)

    def gpus(self, name: str) -> int:
        """GPUs the pod of pipeline ``name`` requests (none at all unless ``gpu``)."""
        return self.component(name).accelerators if self.gpu else 0


def read_globals(project_path: Path | str, env: str) -> dict[str, Any]:
    """``conf/<env>/globals.yml`` as plain YAML (empty if there is none)."""
    path = Path(project_path) / "conf" / env / "globals.yml"
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def read_components(path: Path | str, base: dict[str, ComponentConfig] | None = None,
                    ) -> dict[str, ComponentConfig]:
    """Per-pipeline overrides from YAML, merged field by field over ``base``::

        decoder_pretraining: {accelerators: 4, memory_limit: 128Gi}
        latent_adaptation: {cpu_request: "2"}
    """
    components = dict(default_components() if base is None else base)
    known = {f.name for f in dataclasses.fields(ComponentConfig)}
    for name, overrides in (yaml.safe_load(Path(path).read_text()) or {}).items():
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"{path}: {name}: unknown fields {sorted(unknown)}; known: {sorted(known)}")
        current = components.get(name, ComponentConfig())
        components[name] = dataclasses.replace(current, **overrides)
    return components


def _component_name(pipeline: str) -> str:
    return "kedro-" + re.sub(r"[^a-z0-9]+", "-", pipeline.lower()).strip("-")


def _kedro_component(pipeline: str, options: CompileOptions, fixed_params: list[str],
                     shard_namespace: str | None):
    """A container component that runs one Kedro pipeline in the project image.

    ``--params`` gets, in order: the ``storage_root`` and ``kedro_params`` pipeline
    parameters, the compile-time ``fixed_params``, then the shard (so nothing overrides it).
    Kedro drops the empty item an empty ``kedro_params`` leaves.
    """
    from kfp import dsl

    base_args = ["run", "--pipelines", pipeline, "--env", options.kedro_env, "--params"]
    if shard_namespace is None:
        def component(storage_root: str, kedro_params: str):
            params = [f"storage_root={storage_root}", kedro_params, *fixed_params]
            return dsl.ContainerSpec(image=options.image, command=["kedro"],
                                     args=[*base_args, ",".join(f"{p}" for p in params)])
    else:
        def component(storage_root: str, kedro_params: str, shard: int):
            params = [f"storage_root={storage_root}", kedro_params, *fixed_params,
                      f"{shard_namespace}.shard={shard}",
                      f"{shard_namespace}.num_shards={options.num_shards}"]
            return dsl.ContainerSpec(image=options.image, command=["kedro"],
                                     args=[*base_args, ",".join(f"{p}" for p in params)])
    component.__name__ = _component_name(pipeline).replace("-", "_")
    component.__doc__ = f"kedro run --pipelines {pipeline} --env {options.kedro_env}"
    return dsl.container_component(component)


def _configure(task, pipeline: str, config: ComponentConfig, options: CompileOptions,
               shared_root: str) -> None:
    """Resources, accelerators, caching, volumes and secrets of one task."""
    from kfp import kubernetes

    task.set_display_name(pipeline)
    task.set_cpu_request(config.cpu_request).set_cpu_limit(config.cpu_limit)
    task.set_memory_request(config.memory_request).set_memory_limit(config.memory_limit)
    if options.gpus(pipeline):
        task.set_accelerator_type(options.accelerator_type)
        task.set_accelerator_limit(options.gpus(pipeline))
        if options.gpu_toleration:
            kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists",
                                      effect="NoSchedule")
    task.set_caching_options(enable_caching=options.enable_caching)
    if options.shared_pvc:
        kubernetes.mount_pvc(task, pvc_name=options.shared_pvc, mount_path=shared_root)
    if options.storage_secret:
        kubernetes.use_secret_as_env(task, options.storage_secret,
                                     {key: key for key in STORAGE_KEYS_REQUIRED})
        kubernetes.use_secret_as_env(task, options.storage_secret,
                                     {key: key for key in STORAGE_KEYS_OPTIONAL}, optional=True)
    if options.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(options.image_pull_secrets))


def build_pipeline(dag: PipelineDag, options: CompileOptions, default_storage_root: str,
                   shared_root: str):
    """The KFP pipeline (a ``GraphComponent``) for ``dag``."""
    from kfp import dsl

    if options.num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {options.num_shards}")
    components = {}
    for name in dag.order:
        config = options.component(name)
        # shared_root always travels: the catalog's local paths then match the mount path.
        fixed = [f"shared_root={shared_root}"]
        fixed += [f"{k}={str(v).format(shared_root=shared_root)}"
                  for k, v in config.params.items()]
        components[name] = _kedro_component(name, options, fixed, config.shard_namespace)

    order = " -> ".join(dag.order)

    @dsl.pipeline(name=options.pipeline_name,
                  description=f"bitlatent Kedro pipelines on Kubeflow: {order}")
    def pipeline(storage_root: str = default_storage_root, kedro_params: str = ""):
        tasks = {}
        for name in dag.order:
            config = options.component(name)
            upstream = [tasks[up] for up in dag.dependencies(name)]
            if config.shard_namespace is None:
                task = components[name](storage_root=storage_root, kedro_params=kedro_params)
            else:
                with dsl.ParallelFor(items=list(range(options.num_shards)),
                                     parallelism=options.parallelism or None,
                                     name=f"{_component_name(name)}-shards") as shard:
                    task = components[name](storage_root=storage_root,
                                            kedro_params=kedro_params, shard=shard)
            # Inside a ParallelFor, .after() on the loop's task makes the downstream task
            # wait for every iteration (KFP allows it when no data is exchanged).
            task.after(*upstream)
            _configure(task, name, config, options, shared_root)
            tasks[name] = task

    return pipeline


def compile_pipeline(
    output: Path | str,
    image: str,
    num_shards: int = 8,
    *,
    project_path: Path | str = ".",
    registry: dict | None = None,
    check_catalog: bool = True,
    **options: Any,
) -> Path:
    """Compile the KFP pipeline to ``output`` (IR YAML) and return its path. Offline.

    Args:
        output: where the YAML goes.
        image: the pipeline image.
        num_shards: iterations of the ``latent_adaptation`` fan-out.
        project_path: the Kedro project (its registry, and ``conf/<env>/globals.yml`` for
            the default roots).
        registry: pipelines to use instead of the project's (tests).
        check_catalog: fail if a pipeline reads a dataset that the cluster catalog keeps
            in memory or on a pod-local path (it would be missing in the pipeline's own pod).
        **options: any other ``CompileOptions`` field.
    """
    from kfp import compiler

    opts = CompileOptions(image=image, num_shards=num_shards, **options)
    project_path = Path(project_path)
    if registry is None:
        registry = load_registry(project_path)
    dag = PipelineDag.from_registry(registry, excluded=opts.excluded)
    if not dag.order:
        raise ValueError("no Kedro pipeline to compile (the registry has only __default__)")
    env = opts.kedro_env
    found = read_globals(project_path, env)
    storage_root = opts.storage_root or found.get("storage_root")
    shared_root = opts.shared_root or found.get("shared_root")
    if not storage_root or not shared_root:
        raise ValueError(
            f"storage_root and shared_root: set them in conf/{env}/globals.yml or pass them"
        )
    storage_root, shared_root = str(storage_root).rstrip("/"), str(shared_root).rstrip("/")
    if check_catalog:
        catalog = cluster_catalog_config(project_path, env, {
            "storage_root": storage_root, "shared_root": shared_root})
        missing = unshared_inputs(dag, catalog, shared_root if opts.shared_pvc else None)
        if missing:
            detail = "; ".join(f"{p}: {sorted(d)}" for p, d in sorted(missing.items()))
            raise ValueError(
                f"each pipeline runs in its own pod, but these inputs are kept in memory or on "
                f"a pod-local path by conf/{env}/catalog.yml (use storage_root or the "
                f"shared volume {shared_root}): {detail}"
            )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        build_pipeline(dag, opts, storage_root, shared_root),
        package_path=str(output),
    )
    return output


def cluster_catalog_config(project_path: Path | str, env: str = CPU_ENV,
                           runtime_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The catalog Kedro resolves for ``env`` (base merged with it), without building it."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        str(Path(project_path) / "conf"), base_env="base", default_run_env=env,
        runtime_params=runtime_params,
    )
    return dict(loader["catalog"])
