"""dvc.yaml, .dvc/config and .dvcignore checked against the Kedro project, without running
anything: one stage per pipeline, outs at the catalog's paths, deps covering the code each
pipeline imports and the artifacts it reads, params from conf/base/parameters_*.yml."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml
from configobj import ConfigObj

from bitlatent.datasets.models import LatentParts
from tests.tiny_project import PROJECT

SRC = PROJECT / "src"
# Kedro reads every conf/base/**/catalog*.yml
CATALOG = {name: entry for path in sorted((PROJECT / "conf" / "base").glob("**/catalog*.yml"))
           for name, entry in (yaml.safe_load(path.read_text()) or {}).items()}
PARTS_DATASET = "bitlatent.datasets.models.LatentPartsDataset"
# Imported by every run but with no effect on any result: environment defaults and the version.
NO_EFFECT = {"src/bitlatent/__init__.py"}


@dataclass
class Stage:
    cmd: str
    deps: list[str] = field(default_factory=list)
    params: dict[str, list[str]] = field(default_factory=dict)  # params file -> tracked keys
    outs: dict[str, bool] = field(default_factory=dict)  # path -> cached
    metrics: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, Stage]:
    """Every stage of dvc.yaml as DVC resolves it (foreach expanded), read in a scratch copy."""
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("dvcyaml")
    (root / ".dvc").mkdir()
    shutil.copy(PROJECT / "dvc.yaml", root / "dvc.yaml")
    shutil.copy(PROJECT / ".dvc" / "config", root / ".dvc" / "config")
    config = {"core": {"no_scm": True, "site_cache_dir": str(root / "site-cache")}}
    result = {}
    with Repo(str(root), config=config) as repo:
        for stage in repo.index.stages:
            info = Stage(cmd=stage.cmd)
            for dep in stage.deps:
                if hasattr(dep, "params"):
                    info.params[dep.def_path] = list(dep.params)
                else:
                    info.deps.append(dep.def_path)
            for out in stage.outs:
                info.outs[out.def_path] = out.use_cache
                if out.metric:
                    info.metrics.append(out.def_path)
                if out.plot:
                    info.plots.append(out.def_path)
            result[stage.name] = info
    return result


def dvc_yaml() -> dict:
    return yaml.safe_load((PROJECT / "dvc.yaml").read_text())


def group(stages: dict[str, Stage], pipeline: str) -> dict[str, Stage]:
    return {name: s for name, s in stages.items() if name.split("@")[0] == pipeline}


def kedro_pipeline(name: str):
    return importlib.import_module(f"bitlatent.pipelines.{name}").create_pipeline()


def runs_alone(name: str) -> bool:
    """Whether ``kedro run --pipelines <name>`` can run: every input it reads is in the catalog
    (a pipeline waiting for another one's output, e.g. export's ``text_to_latent`` before the
    alignment pipeline lands, cannot be a stage yet)."""
    return all(d.startswith("params:") or d in CATALOG for d in kedro_pipeline(name).inputs())


# Every pipeline folder that can run on its own is a DVC stage (group).
PIPELINES = sorted(p.parent.name for p in (SRC / "bitlatent" / "pipelines").glob("*/pipeline.py")
                   if runs_alone(p.parent.name))


def catalog_path(dataset: str) -> str | None:
    entry = CATALOG.get(dataset) or {}
    return entry.get("filepath") or entry.get("path")


def under(path: str, folder: str) -> bool:
    return path == folder or PurePosixPath(folder) in PurePosixPath(path).parents


def cmd_params(cmd: str) -> set[str]:
    """Parameter keys a stage's command sets with ``--params "a.b=1,c=2"``."""
    if "--params" not in cmd:
        return set()
    spec = cmd.split("--params", 1)[1].strip().split()[0].strip("\"'")
    return {item.split("=", 1)[0] for item in spec.split(",")}


# --- imports --------------------------------------------------------------------------------

def module_file(module: str) -> Path | None:
    path = SRC / Path(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def bitlatent_imports(path: Path, module: str, classes: set[str] | None) -> set[str]:
    """bitlatent modules that ``module`` imports: all of them (lazy ones in functions too), or,
    when ``classes`` is given, those at the top level and inside those classes only."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    if classes is None:
        nodes = list(ast.walk(tree))
    else:
        tops = [top for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef))
                and not (isinstance(top, ast.ClassDef) and top.name not in classes)]
        nodes = [n for top in tops for n in ast.walk(top)]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "bitlatent"}


def import_closure(roots: set[str], dataset_classes: dict[str, set[str]]) -> set[str]:
    """Every bitlatent source file that running ``roots`` can execute (parent packages and lazy
    imports included). A ``bitlatent.datasets`` module counts with its top level and the dataset
    classes the pipeline uses (``dataset_classes``): its other classes serve other pipelines
    (``datasets.models`` holds the decoder's and the text model's datasets)."""
    seen: dict[str, Path] = {}
    todo = list(roots | set(dataset_classes))
    while todo:
        module = todo.pop()
        if module in seen or (path := module_file(module)) is None:
            continue
        seen[module] = path
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        classes = dataset_classes.get(module, set()) if module.startswith("bitlatent.datasets.") else None
        todo += bitlatent_imports(path, module, classes)
    return {p.relative_to(PROJECT).as_posix() for p in seen.values()}


def has_code(path: Path) -> bool:
    """False for a package marker: an ``__init__.py`` holding at most a docstring."""
    body = ast.parse((PROJECT / path).read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def pipeline_code(name: str) -> set[str]:
    """The code a pipeline runs: its own folder and the catalog's dataset classes it uses."""
    folder = SRC / "bitlatent" / "pipelines" / name
    roots = {f"bitlatent.pipelines.{name}.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__"}
    datasets: dict[str, set[str]] = {}
    for dataset in kedro_pipeline(name).datasets():
        kind = (CATALOG.get(dataset) or {}).get("type", "")
        if kind.startswith("bitlatent."):
            module, cls = kind.rsplit(".", 1)
            datasets.setdefault(module, set()).add(cls)
    return {f for f in import_closure(roots, datasets) if f not in NO_EFFECT and has_code(Path(f))}


# --- tests ----------------------------------------------------------------------------------

def test_one_stage_per_kedro_pipeline(stages):
    assert {name.split("@")[0] for name in stages} == set(PIPELINES)
    for name, stage in stages.items():
        assert stage.cmd.split()[:4] == ["kedro", "run", "--pipelines", name.split("@")[0]], name


def test_adaptation_jobs_are_set_once_and_name_the_parts_like_the_code(stages):
    adaptation = next(v["adaptation"] for v in dvc_yaml()["vars"] if "adaptation" in v)
    n = adaptation["num_jobs"]
    assert n >= 1 and adaptation["jobs"] == list(range(n)), "vars.adaptation.jobs must be 0 .. num_jobs-1"
    jobs = group(stages, "latent_adaptation")
    assert sorted(jobs) == sorted(f"latent_adaptation@{k}" for k in range(n))
    root = catalog_path("adapted_latents")
    for k in range(n):
        stage = jobs[f"latent_adaptation@{k}"]
        assert f"latent_adaptation.shard={k},latent_adaptation.num_shards={n}" in stage.cmd
        part = LatentParts(Path(root)).part_dir(k, n).as_posix()  # where the job really writes
        assert list(stage.outs) == [part] and stage.outs[part] is True
    # evaluation depends on the folder that holds every part, hence on every job
    assert root in stages["evaluation"].deps


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_outs_are_the_catalog_paths_of_the_pipeline_outputs(stages, pipeline):
    kedro = kedro_pipeline(pipeline)
    expected = set()
    for dataset in kedro.all_outputs():
        path = catalog_path(dataset)
        if path and CATALOG[dataset]["type"] != PARTS_DATASET:
            expected.add(path)
    for name, stage in group(stages, pipeline).items():
        outs = {p for p in stage.outs if not p.startswith(catalog_path("adapted_latents") + "/part-")}
        assert outs == expected, name


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_artifact_a_pipeline_reads_is_a_dep(stages, pipeline):
    kedro = kedro_pipeline(pipeline)
    for name, stage in group(stages, pipeline).items():
        for dataset in kedro.inputs():
            path = catalog_path(dataset)
            if path is None:
                continue
            if CATALOG[dataset]["type"] == PARTS_DATASET and any(under(o, path) for o in stage.outs):
                continue  # the job's own part folder (written, skipped shards re-read)
            assert any(under(path, dep) for dep in stage.deps), f"{name} reads {path} but does not depend on it"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_params_are_the_groups_the_pipeline_uses_read_from_kedro_conf(stages, pipeline):
    files = {p.relative_to(PROJECT).as_posix(): yaml.safe_load(p.read_text()) or {}
             for p in sorted((PROJECT / "conf" / "base").glob("parameters*.yml"))}
    used = {d.split(":", 1)[1].split(".")[0] for d in kedro_pipeline(pipeline).inputs() if d.startswith("params:")}
    for name, stage in group(stages, pipeline).items():
        assert set(stage.params) <= set(files), f"{name}: params must come from conf/base/parameters_*.yml"
        tracked = {key for keys in stage.params.values() for key in keys}
        assert {key.split(".")[0] for key in tracked} == used, name
        on_cmd = cmd_params(stage.cmd)
        for group_name in used:
            file = next(f for f, content in files.items() if group_name in content)
            keys = stage.params.get(file, [])
            if group_name in keys:
                continue
            # a group tracked key by key: every key but those the command line sets
            needed = {f"{group_name}.{k}" for k in files[file][group_name]} - on_cmd
            assert needed <= set(keys), f"{name}: untracked {sorted(needed - set(keys))}"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_code_deps_cover_every_module_the_pipeline_imports(stages, pipeline):
    code = pipeline_code(pipeline)
    assert f"src/bitlatent/pipelines/{pipeline}/nodes.py" in code
    for name, stage in group(stages, pipeline).items():
        missing = sorted(f for f in code if not any(under(f, dep) for dep in stage.deps))
        assert not missing, f"{name}: add these (or their folder) to its deps in dvc.yaml: {missing}"
        outs = [out for other in stages.values() for out in other.outs]
        for dep in stage.deps:
            # a dep is either in the repository or an output of another stage (absent on a fresh clone)
            made = any(under(dep, out) or under(out, dep) for out in outs)
            assert made or (PROJECT / dep).exists(), f"{name}: dep {dep} neither exists nor is a stage output"


def test_metrics_and_plots_are_declared(stages):
    evaluation = stages["evaluation"]
    assert evaluation.metrics == ["data/08_reporting/metrics.json"]
    assert evaluation.outs["data/08_reporting/metrics.json"] is False  # kept by git
    images = {p for s in stages.values() for p in s.plots}
    pngs = {path for path in (catalog_path(name) for name in CATALOG) if path and path.endswith(".png")}
    assert pngs and images == pngs  # every figure of the catalog is an image plot
    plots = {k: v for entry in dvc_yaml()["plots"] if isinstance(entry, dict) for k, v in entry.items()}  # strings: image files
    for stage, curves, fields in (("decoder_pretraining", "data/08_reporting/pretraining_curves.json", {"loss", "psnr"}),
                                  ("alignment", "data/08_reporting/alignment_curves.json", {"loss", "bit_accuracy"})):
        assert stages[stage].outs[curves] is False  # kept by git, like the metrics
        assert {plot["y"].get(curves) for plot in plots.values() if plot["x"] == "step"} - {None} == fields


def scratch_paths(tree, keys=("scratch_dir", "checkpoint_root", "feature_cache")) -> list[str]:
    """Values of staging/checkpoint/cache parameters anywhere in a parameters tree."""
    if isinstance(tree, dict):
        return [v for k, v in tree.items() if k in keys and isinstance(v, str)] + [
            p for v in tree.values() for p in scratch_paths(v, keys)]
    return []


def test_nothing_outside_the_artifacts_is_an_output(stages):
    outs = [p for s in stages.values() for p in s.outs]
    assert len(outs) == len(set(outs))
    folders = [path for f in sorted((PROJECT / "conf" / "base").glob("parameters*.yml"))
               for path in scratch_paths(yaml.safe_load(f.read_text()))]
    assert {"data/02_intermediate/scratch", "data/06_models/checkpoints/pretraining"} <= set(folders)
    for scratch in folders:
        assert not any(under(o, scratch) or under(scratch, o) for o in outs), scratch
        ignored = [line.strip("/") for line in (PROJECT / ".dvcignore").read_text().split() if line.startswith("/")]
        assert any(under(scratch, folder) for folder in ignored), f"{scratch}: list it in .dvcignore"


def test_dvc_config_telemetry_off_and_a_local_default_remote():
    config = ConfigObj(str(PROJECT / ".dvc" / "config"))
    assert config["core"]["analytics"] == "false"
    remote = config[f'remote "{config["core"]["remote"]}"']
    assert "://" not in remote["url"], "the default remote is a local folder"
    folder = (PROJECT / ".dvc" / remote["url"]).resolve()  # DVC resolves it from .dvc/
    assert PROJECT.resolve() not in [folder, *folder.parents], "the default remote lies outside the work tree"
    assert not (PROJECT / ".dvc" / "config.local").exists() or "config.local" in (
        PROJECT / ".dvc" / ".gitignore").read_text()


def test_dvcignore_keeps_bytecode_out_of_code_deps():
    ignored = (PROJECT / ".dvcignore").read_text().split()
    assert "__pycache__/" in ignored and "*.py[cod]" in ignored


def test_uncached_outputs_are_committed_by_git(stages):
    """``cache: false`` outputs live in git only: git must not ignore them, or a fresh clone
    misses them (``dvc pull`` cannot restore them) and ``dvc metrics diff`` has nothing to read."""
    uncached = sorted(p for s in stages.values() for p, cached in s.outs.items() if not cached)
    ignored = [p for p in uncached
               if subprocess.run(["git", "check-ignore", "-q", "--no-index", p], cwd=PROJECT).returncode == 0]
    assert not ignored, ("un-ignore them in .gitignore: " + " ".join(f"!{p}" for p in ignored))
