"""Kedro dataset for the exported ONNX bundle folder (``bitlatent.inference.bundle``).

``save`` takes the finished staging folder the export node wrote and puts it in place:

* local paths: one rename (``commit_bundle``), so a killed run never leaves a half-written
  bundle under the final name;
* object storage (``s3://...``, through fsspec): the old ``manifest.json`` is deleted first,
  the files are uploaded, files the new bundle lacks are deleted, and ``manifest.json`` goes
  last, so a reader that finds a manifest finds every file it lists (and checks their sha256).

``load`` returns an ``OnnxBundle`` handle (the manifest, checked against every file's sha256);
a remote bundle is downloaded to a local cache folder first. Nothing here imports torch.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from kedro.io import AbstractDataset
from kedro.io.core import get_protocol_and_path

from bitlatent.inference.bundle import MANIFEST_FILE, commit_bundle, read_manifest

__all__ = ["OnnxBundle", "OnnxBundleDataset"]


@dataclass
class OnnxBundle:
    """A bundle folder on the local disk and its (verified) manifest."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> "OnnxBundle":
        return cls(Path(path), read_manifest(path, verify=verify))

    @property
    def files(self) -> list[str]:
        return sorted(self.manifest["files"])

    def generator(self, **kwargs: Any):
        """An ``OnnxGenerator`` on this bundle (kwargs: device, precision, threads, ...)."""
        from bitlatent.inference import OnnxGenerator

        return OnnxGenerator(self.path, verify=False, **kwargs)  # verified when opened


class OnnxBundleDataset(AbstractDataset[Path, OnnxBundle]):
    """The ``onnx_bundle`` folder: ``filepath`` is local (``data/06_models/onnx``) or an fsspec URL.

    Args:
        filepath: the bundle folder.
        verify: check every file's sha256 on load.
        cache_dir: where a remote bundle is downloaded on load (default: a new temporary folder).
        credentials, fs_args: passed to ``fsspec.filesystem`` (as kedro-datasets do).
    """

    def __init__(self, filepath: str, verify: bool = True, cache_dir: str | None = None,
                 credentials: dict[str, Any] | None = None, fs_args: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None):  # fmt: skip
        protocol, path = get_protocol_and_path(filepath)
        self._protocol = protocol
        self._filepath = PurePosixPath(path)
        self._raw = filepath
        self._verify = verify
        self._cache_dir = cache_dir
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **(fs_args or {}))
        self.metadata = metadata

    @property
    def _local(self) -> bool:
        return self._protocol in ("file", "local")

    def _remote(self, name: str) -> str:
        return str(self._filepath / name)

    def load(self) -> OnnxBundle:
        if not self._exists():
            raise FileNotFoundError(f"no ONNX bundle at {self._raw}: run `kedro run --pipelines export` first")
        if self._local:
            return OnnxBundle.open(Path(str(self._filepath)), verify=self._verify)
        local = Path(tempfile.mkdtemp(prefix="onnx-bundle-", dir=self._cache_dir))
        manifest = json.loads(self._fs.cat_file(self._remote(MANIFEST_FILE)))
        for name in manifest["files"]:
            self._fs.get_file(self._remote(name), str(local / name))
        (local / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return OnnxBundle.open(local, verify=self._verify)

    def save(self, data: Path | str | OnnxBundle) -> None:
        staging = Path(data.path if isinstance(data, OnnxBundle) else data)
        manifest = read_manifest(staging, verify=True)  # never publish a broken bundle
        if self._local:
            target = Path(str(self._filepath))
            if staging.resolve() != target.resolve():
                commit_bundle(staging, target)
            return
        root = str(self._filepath)
        if self._fs.exists(self._remote(MANIFEST_FILE)):
            self._fs.rm_file(self._remote(MANIFEST_FILE))  # readers now see "no bundle", not a mix
        self._fs.makedirs(root, exist_ok=True)
        for name in manifest["files"]:
            self._fs.put_file(str(staging / name), self._remote(name))
        keep = set(manifest["files"]) | {MANIFEST_FILE}
        for path in self._fs.ls(root, detail=False):
            if PurePosixPath(path).name not in keep and self._fs.isfile(path):
                self._fs.rm_file(path)
        self._fs.put_file(str(staging / MANIFEST_FILE), self._remote(MANIFEST_FILE))

    def _exists(self) -> bool:
        return bool(self._fs.exists(self._remote(MANIFEST_FILE)))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._raw, "protocol": self._protocol, "verify": self._verify}
