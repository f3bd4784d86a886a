"""`bitlatent kubeflow compile|dag`: the click group on its own and inside a parent CLI."""

from __future__ import annotations

import click
from click.testing import CliRunner

from bitlatent.kubeflow import kubeflow, main
from bitlatent.kubeflow.cli import default_image
from tests.kubeflow.conftest import Compiled
from tests.tiny_project import PROJECT


def test_main_compiles_offline(tmp_path, capsys):
    output = tmp_path / "out" / "pipeline.yaml"
    code = main(["compile", "-o", str(output), "--image", "reg/bitlatent:7", "--num-shards", "3",
                 "--parallelism", "1", "--cache", "--project-path", str(PROJECT)])
    assert code == 0
    assert f"wrote {output}" in capsys.readouterr().out
    compiled = Compiled(output)
    assert "data_validation" in compiled.pipelines
    assert compiled.executor("data_validation")["image"] == "reg/bitlatent:7"
    assert compiled.tasks["data_validation"]["cachingOptions"]["enableCache"] is True
    if "latent_adaptation" in compiled.loops:
        loop = compiled.loops["latent_adaptation"]
        assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2]"
        assert loop["iteratorPolicy"]["parallelismLimit"] == 1


def test_the_group_plugs_into_the_bitlatent_cli(tmp_path, monkeypatch):
    @click.group()
    def bitlatent():
        """Stands in for bitlatent.cli's group."""

    bitlatent.add_command(kubeflow)
    monkeypatch.chdir(PROJECT)
    monkeypatch.setenv("BITLATENT_IMAGE", "env/image:1")
    resources = tmp_path / "resources.yml"
    resources.write_text("data_validation: {memory_limit: 64Gi}\n")
    output = tmp_path / "pipeline.yaml"
    result = CliRunner().invoke(bitlatent, [
        "kubeflow", "compile", "-o", str(output), "--resources", str(resources),
        "--storage-secret", "", "--image-pull-secret", "regcred"])
    assert result.exit_code == 0, result.output
    compiled = Compiled(output)
    assert compiled.executor("data_validation")["image"] == "env/image:1"
    assert compiled.executor("data_validation")["resources"]["resourceMemoryLimit"] == "64Gi"
    assert "secretAsEnv" not in compiled.k8s("data_validation")
    assert compiled.k8s("data_validation")["imagePullSecret"][0]["secretName"] == "regcred"


def test_dag_prints_the_run_order(capsys):
    assert main(["dag", "--project-path", str(PROJECT)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "data_validation"


def test_bad_arguments_are_usage_errors(tmp_path):
    assert main(["compile", "--num-shards", "0", "-o", str(tmp_path / "p.yaml")]) == 2
    assert main(["no-such-command"]) == 2


def test_help_and_default_image():
    assert main(["--help"]) == 0
    assert main(["compile", "--help"]) == 0
    assert default_image().startswith("bitlatent-pipeline:")


def test_gpu_and_cpu_choose_the_pods_env_and_their_gpus(tmp_path, capsys):
    for flag, env, gpus in (("--gpu", "k8s_gpu", "1"), ("--cpu", "k8s", None)):
        output = tmp_path / f"{env}.yaml"
        assert main(["compile", flag, "-o", str(output), "--project-path", str(PROJECT)]) == 0
        assert f"--env {env}" in capsys.readouterr().out
        compiled = Compiled(output)
        for name in ("decoder_pretraining", "evaluation"):
            assert compiled.executor(name)["args"][3:5] == ["--env", env]
        accelerator = compiled.executor("decoder_pretraining")["resources"].get("accelerator", {})
        assert accelerator.get("resourceCount") == gpus
        assert "accelerator" not in compiled.executor("evaluation")["resources"]
