"""bitlatent.core, .text, .generation and .inference are the library a user runs with their own
torch (a GPU machine that cannot install packages): they import, and decode, in an interpreter
where Kedro, Great Expectations and DVC cannot be imported (a meta-path blocker in sitecustomize)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BLOCKED = ("kedro", "great_expectations", "dvc")

BLOCKER = f"""
import sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked: the library must not need it")
        return None

sys.meta_path.insert(0, Blocker())
"""

CHECK = textwrap.dedent("""
    import importlib, pkgutil, sys
    for blocked in {blocked!r}:
        try:
            importlib.import_module(blocked)
        except ImportError:
            pass
        else:
            sys.exit(f"{{blocked}} imported: the blocker does not work")
    import bitlatent.generation
    for name in ("bitlatent.core", "bitlatent.text", "bitlatent.inference"):
        package = importlib.import_module(name)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{{name}}.{{module.name}}")
    import torch
    from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig
    config = DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(8, 8, 8),
                           blocks_per_stage=(1, 1, 1))
    bits = torch.randint(0, 2, (2, 4, 4, 4)).float() * 2 - 1   # (B, C, h, w) of +-1 bits
    with torch.no_grad():
        images = BinaryLatentDecoder(config).eval()(bits)      # (B, 3, H, W)
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all(), images.shape
    print("decoded", tuple(images.shape))
""").format(blocked=BLOCKED)


def test_the_library_imports_and_decodes_without_kedro_great_expectations_or_dvc(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PROJECT / "src")])}
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "decoded (2, 3, 16, 16)" in done.stdout
