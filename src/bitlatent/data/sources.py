"""Readers for real image–caption formats. Each yields ``RawPair`` rows and never raises on a
bad row: problems found while reading go into ``RawPair.problems`` so that the row is
rejected with its reason, and every input row is accounted for. (A file that is not of its
format at all, e.g. a CSV without a header, is a ``ValueError`` naming the file.)

Formats:
- ``coco``: a COCO captions JSON (``annotations/captions_*.json``) and its image folder.
- ``csv``: ``image,caption`` rows with a header line.
- ``jsonl``: one ``{"image": ..., "caption": ...}`` object per line.
- ``folder``: images with a same-name ``.txt`` caption file (one caption per line).

Where image paths lead (csv and jsonl; ``image_roots``): a relative path is taken against the
captions file's folder first, then against an ``images/`` folder beside it, so both
``images/photo1.jpg`` (the usual convention, and Hugging Face's image-folder metadata) and a
bare ``photo1.jpg`` with the images in ``images/`` (the Flickr8k layout) work. ``data.image_root``,
when set, is the only root. A path never leads outside its root: ``..``, an absolute path
elsewhere and a symlink pointing out are rejected as ``path_escapes_root``
(``images.locate_image``). See docs/data.md.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from bitlatent.data.records import RawPair
from bitlatent.data.rules import INVALID_UTF8, MALFORMED_ROW, MISSING_IMAGE_FIELD, UNREADABLE_FILE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
IMAGE_FOLDER_NAMES = ("images", "Images")


def _has_invalid_utf8(*fields: str | None) -> bool:
    """True when a field holds what UTF-8 cannot encode: bytes that were not UTF-8 (decoded with
    ``surrogateescape``) or a lone surrogate (a JSON ``\\ud800`` escape)."""
    for field in fields:
        if field is None:
            continue
        try:
            field.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


def _clean(field: str | None) -> str | None:
    """Make a possibly invalid field printable: invalid bytes and lone surrogates become U+FFFD."""
    if field is None:
        return None
    try:
        return field.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in field)


def _pair(ordinal: int, image: str | None, caption: str | None, roots: tuple[Path, ...],
          problems: list[str] | None = None) -> RawPair:
    problems = list(problems or [])
    if _has_invalid_utf8(image, caption):
        if INVALID_UTF8 not in problems:
            problems.append(INVALID_UTF8)
        image, caption = _clean(image), _clean(caption)
    image = image.strip() if image is not None else None
    if not image and not problems:
        problems.append(MISSING_IMAGE_FIELD)
    return RawPair(ordinal=ordinal, image_id=image or f"row-{ordinal}", caption=caption,
                   image_path=image or None, roots=roots, problems=problems)


def image_roots(caption_file: Path, image_root: Path | None = None) -> tuple[Path, ...]:
    """The folders a CSV/JSONL file's image paths are taken against, in order: ``image_root``
    alone when given; else the file's own folder, then an ``images/`` (or ``Images/``) folder
    beside it when there is one."""
    if image_root is not None:
        return (image_root,)
    folder = caption_file.parent
    beside = next((folder / name for name in IMAGE_FOLDER_NAMES if (folder / name).is_dir()), None)
    return (folder,) if beside is None else (folder, beside)


def read_csv(path: Path, image_root: Path | None = None) -> Iterator[RawPair]:
    """Rows of an ``image,caption`` CSV with a header line (a UTF-8 byte-order mark is allowed).
    A row the CSV parser cannot read, or with another number of fields than the header, is a
    ``malformed_row``."""
    roots = image_roots(path, image_root)
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
        except csv.Error as error:
            raise ValueError(f"{path}: unreadable CSV header: {error}") from None
        if "image" not in header or "caption" not in header:
            raise ValueError(f"{path}: expected a header with 'image' and 'caption', got {header}")
        image_at, caption_at = header.index("image"), header.index("caption")
        ordinal = -1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:  # e.g. a field over the csv module's size limit
                ordinal += 1
                yield _pair(ordinal, None, None, roots, [MALFORMED_ROW])
                continue
            if not row:
                continue  # a blank line is not a row
            ordinal += 1
            if len(row) != len(header):
                problems = [MALFORMED_ROW, *([INVALID_UTF8] if _has_invalid_utf8(*row) else [])]
                image, caption = (row[at] if len(row) > at else None for at in (image_at, caption_at))
                yield _pair(ordinal, _clean(image), _clean(caption), roots, problems)
                continue
            yield _pair(ordinal, row[image_at], row[caption_at], roots)


def read_jsonl(path: Path, image_root: Path | None = None) -> Iterator[RawPair]:
    """One JSON object per line with string ``image`` and ``caption`` values; blank lines are
    skipped. A line that is not such an object is a ``malformed_row``; a line holding bytes
    that are not UTF-8 is ``invalid_utf8`` (as well)."""
    roots = image_roots(path, image_root)
    with open(path, "rb") as lines:
        ordinal = 0
        for line in lines:
            if not line.strip():
                continue
            text = line.decode("utf-8", "surrogateescape")
            problems = [INVALID_UTF8] if _has_invalid_utf8(text) else []
            try:
                record = json.loads(text)
            except (ValueError, RecursionError):
                record = None
            if not isinstance(record, dict):
                yield _pair(ordinal, None, None, roots, [*problems, MALFORMED_ROW])
            else:
                image, caption = record.get("image"), record.get("caption")
                if not all(v is None or isinstance(v, str) for v in (image, caption)):
                    problems.append(MALFORMED_ROW)
                    image, caption = (v if isinstance(v, str) else None for v in (image, caption))
                yield _pair(ordinal, image, caption, roots, problems)
            ordinal += 1


def read_coco(path: Path, image_root: Path | None = None) -> Iterator[RawPair]:
    """Captions of a COCO captions JSON. ``path`` is the JSON file, or a COCO folder whose
    ``annotations/captions_*.json`` files are read in name order (images in the folder named
    after the split, e.g. ``val2017/``, or in ``image_root``). An annotation that is not an
    object with a string caption is a ``malformed_row``."""
    files = [path] if path.is_file() else sorted((path / "annotations").glob("captions_*.json"))
    if not files:
        raise FileNotFoundError(f"{path}: no COCO captions JSON (annotations/captions_*.json)")
    ordinal = 0
    for file in files:
        split_name = file.stem.removeprefix("captions_")  # e.g. val2017
        roots = (image_root or (file.parent.parent / split_name),)
        try:
            document = json.loads(file.read_bytes().decode("utf-8"))
        except (ValueError, RecursionError) as error:
            raise ValueError(f"{file}: not a UTF-8 JSON document: {error}") from None
        if not isinstance(document, dict):
            raise ValueError(f"{file}: a COCO captions file is a JSON object with 'images' and 'annotations'")
        names = {image.get("id"): image.get("file_name") for image in _list(document, "images")
                 if isinstance(image, dict) and isinstance(image.get("id"), (int, str))}
        for annotation in _list(document, "annotations"):
            if not isinstance(annotation, dict) or not isinstance(annotation.get("caption", ""), str):
                yield _pair(ordinal, None, None, roots, [MALFORMED_ROW])
            else:
                key = annotation.get("image_id")
                name = names.get(key) if isinstance(key, (int, str)) else None
                yield _pair(ordinal, name if isinstance(name, str) else None, annotation.get("caption"), roots)
            ordinal += 1


def _list(document: dict, key: str) -> list:
    value = document.get(key, [])
    return value if isinstance(value, list) else []


def read_folder(path: Path, image_root: Path | None = None) -> Iterator[RawPair]:
    """Images with a same-name ``.txt`` beside them; each non-empty line is one caption.
    An image without a caption file gives one row with no caption (rejected, not lost).
    The folder is the only root (``image_root`` does not apply)."""
    if image_root is not None and Path(image_root) != path:
        raise ValueError(f"data.image_root does not apply to the folder format (the images are in {path})")
    roots = (path,)
    ordinal = 0
    for image in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        relative = image.relative_to(path).as_posix()
        sidecar = image.with_suffix(".txt")
        try:
            text = sidecar.read_bytes().decode("utf-8", "surrogateescape") if sidecar.is_file() else None
        except OSError:
            yield _pair(ordinal, relative, None, roots, [UNREADABLE_FILE])  # the caption file
            ordinal += 1
            continue
        captions = [None] if text is None else [line for line in text.splitlines() if line.strip()] or [""]
        for caption in captions:
            yield _pair(ordinal, relative, caption, roots)
            ordinal += 1


READERS = {"csv": read_csv, "jsonl": read_jsonl, "coco": read_coco, "folder": read_folder}
