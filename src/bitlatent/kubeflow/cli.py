"""``bitlatent kubeflow …``: compile the KFP pipeline offline, or show the DAG it would have.

The ``kubeflow`` click group is meant to be added to the main ``bitlatent`` group
(``cli.add_command(kubeflow)``); ``main(argv)`` runs it on its own
(``python -m bitlatent.kubeflow compile -o pipeline.yaml``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click


def default_image() -> str:
    try:
        return f"bitlatent-pipeline:{version('bitlatent')}"
    except PackageNotFoundError:  # pragma: no cover - the package is always installed
        return "bitlatent-pipeline:latest"


def _none_if_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return value or None


@click.group(name="kubeflow")
def kubeflow() -> None:
    """Kubeflow Pipelines (KFP v2) from the Kedro pipeline registry."""


@kubeflow.command(name="compile")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("pipeline.yaml"), show_default=True, help="IR YAML to write.")
@click.option("--image", envvar="BITLATENT_IMAGE", default=default_image,
              show_default="bitlatent-pipeline:<package version>",
              help="Pipeline image (deploy/docker/Dockerfile.pipeline); env BITLATENT_IMAGE.")
@click.option("--num-shards", type=click.IntRange(min=1), default=8, show_default=True,
              help="Shards latent_adaptation fans out over (dsl.ParallelFor).")
@click.option("--parallelism", type=click.IntRange(min=0), default=0, show_default=True,
              help="Shards running at once (0: all of them).")
@click.option("--cache/--no-cache", "enable_caching", default=False, show_default=True,
              help="KFP caching of the components (off: KFP cannot see data changes).")
@click.option("--gpu/--cpu", default=True, show_default=True,
              help="--gpu: GPUs for pretraining, adaptation and alignment, pods run --env k8s_gpu "
                   "(GPU-sized settings); --cpu: no GPU anywhere, pods run --env k8s.")
@click.option("--env", default=None, show_default="k8s_gpu with --gpu, k8s with --cpu",
              help="Kedro config environment the pods run (its catalog must be a cluster one).")
@click.option("--storage-root", default=None,
              help="Default of the storage_root run parameter [conf/<env>/globals.yml].")
@click.option("--shared-root", default=None,
              help="Mount path of the shared volume [conf/<env>/globals.yml].")
@click.option("--shared-pvc", default="bitlatent-shared", show_default=True,
              callback=_none_if_empty, help="ReadWriteMany PVC mounted at shared_root ('' for none).")
@click.option("--storage-secret", default="bitlatent-storage", show_default=True,
              callback=_none_if_empty,
              help="Secret with AWS_* keys for object storage ('' to use the pod's identity).")
@click.option("--accelerator-type", default="nvidia.com/gpu", show_default=True,
              help="GPU resource name for pretraining, adaptation and alignment.")
@click.option("--gpu-toleration/--no-gpu-toleration", default=True, show_default=True,
              help="Tolerate the nvidia.com/gpu taint on GPU tasks.")
@click.option("--image-pull-secret", "image_pull_secrets", multiple=True,
              help="Image pull secret (repeatable).")
@click.option("--resources", "resources_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), default=None,
              help="YAML of per-pipeline overrides: {pipeline: {cpu_request: '4', accelerators: 2}}.")
@click.option("--exclude", "excluded", multiple=True, help="Registered pipeline to leave out.")
@click.option("--project-path", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="The Kedro project.")
@click.option("--check-catalog/--no-check-catalog", default=True, show_default=True,
              help="Fail if a pipeline reads a dataset the cluster catalog keeps in memory.")
def compile_command(output: Path, image: str, num_shards: int, resources_file: Path | None,
                    project_path: Path, check_catalog: bool, image_pull_secrets: tuple[str, ...],
                    excluded: tuple[str, ...], **options) -> None:
    """Compile the KFP pipeline to YAML, offline (no cluster needed)."""
    from bitlatent.kubeflow.compiler import CompileOptions, compile_pipeline, read_components

    if resources_file is not None:
        options["components"] = read_components(resources_file)
    path = compile_pipeline(output, image, num_shards, project_path=project_path,
                            check_catalog=check_catalog, image_pull_secrets=image_pull_secrets,
                            excluded=excluded, **options)
    env = CompileOptions(image, gpu=options["gpu"], env=options["env"]).kedro_env
    gpus = "GPUs requested" if options["gpu"] else "no GPU requested"
    click.echo(f"wrote {path} (image {image}, {num_shards} shards, --env {env}, {gpus})")


@kubeflow.command(name="dag")
@click.option("--project-path", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="The Kedro project.")
@click.option("--exclude", "excluded", multiple=True, help="Registered pipeline to leave out.")
def dag_command(project_path: Path, excluded: tuple[str, ...]) -> None:
    """Print the pipelines in run order, each with what it waits for and why."""
    from bitlatent.kubeflow.dag import PipelineDag, load_registry

    dag = PipelineDag.from_registry(load_registry(project_path), excluded=excluded)
    for name in dag.order:
        ups = dag.dependencies(name)
        click.echo(name)
        for up in ups:
            click.echo(f"  after {up}: {', '.join(sorted(dag.upstream[name][up]))}")


def main(argv: list[str] | None = None) -> int:
    """Run the ``kubeflow`` group on ``argv`` (e.g. ``["compile", "-o", "pipeline.yaml"]``)."""
    try:
        result = kubeflow.main(args=argv, prog_name="bitlatent kubeflow", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return result if isinstance(result, int) else 0
