"""``dvc repro``, push/pull, parameter changes and ``dvc exp run`` on a tiny copy of the project.

One reproduced repository is shared by the module (``dvc repro`` of the whole project is its
slowest step); the tests run in file order, each also alone, and each leaves the repository
committed and up to date.
"""

from __future__ import annotations

import json
import shutil

import yaml

from tests.dvc.conftest import GIT_TRACKED, DvcRepo, ran_stages, tree_digest
from tests.tiny_project import PROJECT

N = next(v["adaptation"]["num_jobs"] for v in yaml.safe_load((PROJECT / "dvc.yaml").read_text())["vars"]
         if "adaptation" in v)
JOBS = [f"latent_adaptation@{k}" for k in range(N)]
PARTS = [f"data/07_model_output/latents/part-{k}-of-{N}" for k in range(N)]
STAGES = {"data_validation", "decoder_pretraining", *JOBS, "alignment", "evaluation", "export", "compression"}
# (before, after): each stage after the stages whose artifacts it reads
ORDER = [("data_validation", "decoder_pretraining"), *[("decoder_pretraining", j) for j in JOBS],
         *[(j, "alignment") for j in JOBS], ("alignment", "evaluation"), ("alignment", "export"),
         *[(j, "compression") for j in JOBS]]
UP_TO_DATE = "Data and pipelines are up to date."
# Everything a pull must bring back: data, models and latents (cached outputs).
CACHED = ["data/03_primary/image_shards", "data/03_primary/pairs.parquet",
          "data/02_intermediate/rejected_pairs.parquet", "data/08_reporting/validation.json",
          "data/06_models/decoder", "data/06_models/latent_spec.json", "data/06_models/pretrain_latents",
          "data/08_reporting/decoder_capacity.json", *PARTS, "data/08_reporting/pretraining_curves.png",
          "data/06_models/text_to_latent", "data/08_reporting/alignment_curves.png",
          "data/08_reporting/reconstruction_grid.png", "data/08_reporting/rate_distortion.png",
          "data/08_reporting/generation_grid.png", "data/06_models/onnx", "data/08_reporting/export.json",
          "data/06_models/entropy_model"]


def changed_stages(repo: DvcRepo) -> set[str]:
    return set(json.loads(repo.dvc("status", "--json").stdout))


def in_order(ran: list[str], stages: set[str]) -> bool:
    """``ran`` is ``stages``, each once, every link of ORDER among them respected."""
    return (len(ran) == len(set(ran)) and set(ran) == stages
            and all(ran.index(a) < ran.index(b) for a, b in ORDER if a in stages and b in stages))


def test_repro_from_scratch_runs_every_stage_in_order(reproduced):
    repo, output = reproduced
    assert in_order(ran_stages(output), STAGES), ran_stages(output)
    assert repo.dvc("status").stdout.strip() == UP_TO_DATE
    metrics = json.loads((repo.root / "data/08_reporting/metrics.json").read_text())
    assert set(metrics["reconstruction"]) == {"pretrain", "adapt", "test"}
    parts = sorted(p.relative_to(repo.root).as_posix() for p in (repo.root / "data/07_model_output/latents").iterdir())
    assert parts == PARTS
    # the checkpoints exist but are no output; git sees the dvc.lock and the uncached reports only
    assert any((repo.root / "data/06_models/checkpoints/pretraining").iterdir())
    tracked = repo.git("ls-files").split()
    assert "dvc.lock" in tracked and set(GIT_TRACKED) <= set(tracked)
    assert not [f for f in tracked if f.startswith("data/") and f not in GIT_TRACKED and not f.endswith(".gitkeep")]


def test_evaluation_waits_for_every_adaptation_job(reproduced):
    repo, _ = reproduced
    dot = repo.dvc("dag", "--dot").stdout
    for job in JOBS:
        for after in ("alignment", "evaluation", "export"):
            assert f'"{job}" -> "{after}"' in dot
        assert f'"decoder_pretraining" -> "{job}"' in dot


def test_second_repro_runs_nothing(reproduced):
    repo, _ = reproduced
    # bytecode written into the code deps (CI does not set PYTHONDONTWRITEBYTECODE) changes nothing
    junk = repo.root / "src/bitlatent/core/__pycache__/junk.cpython-311.pyc"
    junk.parent.mkdir(exist_ok=True)
    junk.write_bytes(b"\0")
    result = repo.dvc("repro")
    assert ran_stages(result.stdout) == []
    assert UP_TO_DATE in result.stdout
    shutil.rmtree(junk.parent)


CURVES = {"data/08_reporting/pretraining_curves.json": {"pretraining_loss": "loss", "pretraining_psnr": "psnr"},
          "data/08_reporting/alignment_curves.json": {"alignment_loss": "loss",
                                                      "alignment_bit_accuracy": "bit_accuracy"}}


def test_metrics_and_plots_render(reproduced, tmp_path):
    repo, _ = reproduced
    metrics = json.loads(repo.dvc("metrics", "show", "--json").stdout)
    (workspace,) = metrics.values()  # keyed "" (the workspace) in DVC 3
    psnr = workspace["data"]["data/08_reporting/metrics.json"]["data"]["reconstruction"]["test"]["psnr"]
    assert psnr > 10
    plots = json.loads(repo.dvc("plots", "show", "--json", "-o", str(tmp_path / "plots")).stdout)
    for image in ("pretraining_curves", "alignment_curves", "reconstruction_grid", "rate_distortion",
                  "generation_grid"):
        assert plots["data"][f"data/08_reporting/{image}.png"][0]["type"] == "image"
    for path, plot_ids in CURVES.items():
        curves = json.loads((repo.root / path).read_text())
        # DVC plots need a list of records [{step, loss, ...}, ...], not one list per column
        assert isinstance(curves, list) and curves and all(isinstance(row, dict) for row in curves), path
        for plot_id, field in plot_ids.items():
            values = plots["data"][plot_id][0]["content"]["data"]["values"]
            assert values and {"step", field} <= set(values[0]), plot_id
    assert not plots.get("errors"), plots["errors"]


def test_push_then_pull_into_an_empty_cache_restores_identical_files(reproduced):
    repo, _ = reproduced
    before = tree_digest(repo.root, *CACHED)
    job, part = JOBS[-1], PARTS[-1]
    assert any(path.startswith(PARTS[0] + "/") and path.endswith(".npz") for path in before)
    assert any(path.endswith(".safetensors") for path in before)
    repo.dvc("push")

    for path in CACHED:
        target = repo.root / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    shutil.rmtree(repo.root / ".dvc" / "cache")
    assert {"data_validation", job} <= changed_stages(repo)

    # one job's latents alone
    repo.dvc("pull", job)
    latents = repo.root / "data/07_model_output/latents"
    assert [p.relative_to(repo.root).as_posix() for p in latents.iterdir()] == [part]
    assert tree_digest(repo.root, part) == {k: v for k, v in before.items() if k.startswith(part + "/")}

    repo.dvc("pull")
    assert tree_digest(repo.root, *CACHED) == before
    assert repo.dvc("status").stdout.strip() == UP_TO_DATE


def test_a_fresh_clone_pulls_from_the_default_remote_and_is_up_to_date(reproduced):
    """``git clone`` + ``dvc pull``, with no set-up: the default remote is the folder beside
    the clone, and the uncached reports come with git."""
    repo, _ = reproduced
    remote = repo.root.parent / "bitlatent-dvc-remote"
    repo.dvc("push")
    assert any(remote.rglob("*")), "the default remote is ../bitlatent-dvc-remote"
    clone = DvcRepo(repo.root.parent / "clone", repo.env)
    repo.run("git", "clone", "-q", str(repo.root), str(clone.root))
    clone.dvc("config", "--local", "core.site_cache_dir", str(repo.root.parent / "clone-site-cache"))
    clone.dvc("pull")
    assert clone.dvc("status").stdout.strip() == UP_TO_DATE
    assert ran_stages(clone.dvc("repro").stdout) == []
    everything = [*CACHED, *GIT_TRACKED]
    assert tree_digest(clone.root, *everything) == tree_digest(repo.root, *everything)


def test_a_parameter_change_reruns_exactly_the_stages_that_depend_on_it(reproduced):
    repo, _ = reproduced
    name = "parameters_alignment.yml"
    epochs = repo.params(name)["alignment"]["train"]["epochs"]
    repo.write_params(name, {"alignment": {"train": {"epochs": epochs + 1}}})
    assert changed_stages(repo) == {"alignment", "evaluation"}  # the stages that read the key

    result = repo.dvc("repro")  # and those downstream of the new text-to-latent model
    assert in_order(ran_stages(result.stdout), {"alignment", "evaluation", "export"}), ran_stages(result.stdout)

    params = json.loads(repo.dvc("params", "diff", "--json").stdout)
    assert params == {f"conf/base/{name}": {"alignment.train.epochs":
                                            {"old": epochs, "new": epochs + 1, "diff": 1}}}
    metrics = json.loads(repo.dvc("metrics", "diff", "--json").stdout)["data/08_reporting/metrics.json"]
    assert any(key.startswith("alignment.") for key in metrics)  # HEAD's metrics come from git
    assert not any(key.startswith("reconstruction.") for key in metrics)  # no latent was refitted
    repo.commit(f"alignment epochs {epochs + 1}")


def test_exp_run_with_a_set_parameter(reproduced):
    repo, _ = reproduced
    name = "parameters_evaluation.yml"
    comments = [line for line in (repo.root / "conf/base" / name).read_text().splitlines() if line.startswith("#")]
    codec_images = repo.params(name)["evaluation"]["codec_images"] - 4

    result = repo.dvc("exp", "run", "-n", "fewer-codec-images",
                      "-S", f"conf/base/{name}:evaluation.codec_images={codec_images}")
    assert ran_stages(result.stdout) == ["evaluation"]

    assert repo.params(name)["evaluation"]["codec_images"] == codec_images
    text = (repo.root / "conf/base" / name).read_text()
    assert all(line in text for line in comments)  # DVC edits Kedro's file in place, comments kept
    metrics = json.loads((repo.root / "data/08_reporting/metrics.json").read_text())
    assert metrics["rate_distortion"]["codec_images"] == codec_images
    assert "fewer-codec-images" in repo.dvc("exp", "list", "--name-only").stdout.split()
    diff = json.loads(repo.dvc("params", "diff", "--json").stdout)
    assert list(diff[f"conf/base/{name}"]) == ["evaluation.codec_images"]
