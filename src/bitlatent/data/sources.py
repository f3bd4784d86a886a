"""Readers for real image–caption formats. Each yields ``RawPair`` rows and never raises on a
bad row: problems found while reading go into ``RawPair.problems`` so that the row is
rejected with its reason, and every input row is accounted for.

Formats:
- ``coco``: a COCO captions JSON (``annotations/captions_*.json``) and its image folder.
- ``csv``: ``image,caption`` rows (the Flickr8k layout), image paths relative to the CSV
  or to an ``images/`` folder beside it.
- ``jsonl``: one ``{"image": ..., "caption": ...}`` object per line.
- ``folder``: images with a same-name ``.txt`` caption file (one caption per line).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from bitlatent.data.images import MISSING_IMAGE_FIELD
from bitlatent.data.records import RawPair

INVALID_UTF8 = "invalid_utf8"
MALFORMED_ROW = "malformed_row"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _has_invalid_utf8(*fields: str | None) -> bool:
    """True when a field decoded with ``surrogateescape`` holds bytes that were not UTF-8."""
    for field in fields:
        if field is None:
            continue
        try:
            field.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


def _clean(field: str | None) -> str | None:
    """Make a possibly invalid field printable (invalid bytes become U+FFFD)."""
    if field is None:
        return None
    return field.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _pair(ordinal: int, image: str | None, caption: str | None, root: Path,
          problems: list[str] | None = None) -> RawPair:
    problems = list(problems or [])
    if _has_invalid_utf8(image, caption):
        problems.append(INVALID_UTF8)
        image, caption = _clean(image), _clean(caption)
    if not image and not problems:
        problems.append(MISSING_IMAGE_FIELD)
    return RawPair(ordinal=ordinal, image_id=image or f"row-{ordinal}", caption=caption,
                   image_path=image or None, root=root, problems=problems)


def default_image_root(caption_file: Path) -> Path:
    """Where image paths of a CSV/JSONL file are relative to: an ``images/`` (or ``Images/``)
    folder beside the file if there is one, else the file's own folder."""
    for name in ("images", "Images"):
        if (caption_file.parent / name).is_dir():
            return caption_file.parent / name
    return caption_file.parent


def read_csv(path: Path, image_root: Path | None = None) -> Iterator[RawPair]:
    """Rows of an ``image,caption`` CSV with a header line."""
    root = image_root or default_image_root(path)
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        header = [h.strip().lower() for h in next(reader, [])]
        if "image" not in header or "caption" not in header:
            raise ValueError(f"{path}: expected a header with 'image' and 'caption', got {header}")
        image_at, caption_at = header.index("image"), header.index("caption")
        ordinal = -1
        for row in reader:
            if not row:
                continue  # a blank line is not a row
            ordinal += 1
            if len(row) != len(header):
                yield _pair(ordinal, row[image_at] if len(row) > image_at else None,
                            None, root, [MALFORMED_ROW])
                continue
            yield _pair(ordinal, row[image_at].strip(), row[caption_at], root)


def read_jsonl(path: Path, image_root: Path | None = None) -> Iterator[RawPair]:
    """One JSON object per line with ``image`` and ``caption`` keys."""
    root = image_root or default_image_root(path)
    with open(path, "rb") as lines:
        ordinal = 0
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except UnicodeDecodeError:
                yield _pair(ordinal, None, _clean(line.decode("utf-8", "surrogateescape")),
                            root, [INVALID_UTF8])
            except ValueError:
                yield _pair(ordinal, None, None, root, [MALFORMED_ROW])
            else:
                image, caption = record.get("image"), record.get("caption")
                yield _pair(ordinal, str(image) if image is not None else None,
                            str(caption) if caption is not None else None, root)
            ordinal += 1


def read_coco(path: Path, image_root: Path | None = None) -> Iterator[RawPair]:
    """Captions of a COCO captions JSON. ``path`` is the JSON file, or a COCO folder whose
    ``annotations/captions_*.json`` files are read in name order (images in the folder named
    after the split, e.g. ``val2017/``)."""
    files = [path] if path.is_file() else sorted((path / "annotations").glob("captions_*.json"))
    if not files:
        raise FileNotFoundError(f"{path}: no COCO captions JSON (annotations/captions_*.json)")
    ordinal = 0
    for file in files:
        split_name = file.stem.removeprefix("captions_")  # e.g. val2017
        root = image_root or (file.parent.parent / split_name)
        document = json.loads(file.read_text(encoding="utf-8"))
        names = {image["id"]: image.get("file_name") for image in document.get("images", [])}
        for annotation in document.get("annotations", []):
            name = names.get(annotation.get("image_id"))
            image = f"{name}" if name else None
            yield _pair(ordinal, image, annotation.get("caption"), root)
            ordinal += 1


def read_folder(path: Path, image_root: Path | None = None) -> Iterator[RawPair]:
    """Images with a same-name ``.txt`` beside them; each non-empty line is one caption.
    An image without a caption file gives one row with no caption (rejected, not lost)."""
    root = image_root or path
    ordinal = 0
    for image in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        relative = image.relative_to(root).as_posix()
        sidecar = image.with_suffix(".txt")
        if not sidecar.is_file():
            yield _pair(ordinal, relative, None, root)
            ordinal += 1
            continue
        text = sidecar.read_bytes().decode("utf-8", "surrogateescape")
        captions = [line for line in text.splitlines() if line.strip()] or [""]
        for caption in captions:
            yield _pair(ordinal, relative, caption, root)
            ordinal += 1


READERS = {"csv": read_csv, "jsonl": read_jsonl, "coco": read_coco, "folder": read_folder}
