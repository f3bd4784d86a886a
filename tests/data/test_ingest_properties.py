"""Property-based tests of the ingest (hypothesis): generated CSV and JSONL files mixing valid
images in every Pillow mode with zero-byte, truncated, non-image and oversized files, paths
with ``..``, absolute paths and symlinks leaving the root, captions with bad bytes, blank, too
long and duplicated, the same image under several captions, and every chunk size.

Each generated row carries what the ingest must make of it (an oracle written from the rules in
docs/data.md, not from the code), so the properties are exact:

- accepted + rejected = input, and a row is accepted exactly when the oracle finds no reason;
- every rejected row has (at least) the oracle's reasons, so a problem found while reading a
  row (``invalid_utf8``, ``malformed_row``) is never lost, whatever image the row shares;
- an accepted caption is one the input held as valid UTF-8 (U+FFFD only when written as such);
- the same input twice gives byte-identical tables and shards;
- the chunk size changes nothing but the number of Great Expectations batches.

The examples are bounded (profile ``ingest``: a few dozen ingests, well under a minute); set
``BITLATENT_HYPOTHESIS=thorough`` for a long search.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bitlatent.data.config import DataConfig
from bitlatent.data.ingest import ingest, staged_pairs_path
from tests.data.bad_inputs import decompression_bomb_png, image_in_mode, save_jpeg, textured, truncated_jpeg

settings.register_profile("ingest", max_examples=20, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ingest-thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = settings.get_profile("ingest-thorough" if os.environ.get("BITLATENT_HYPOTHESIS") == "thorough" else "ingest")

CAPTION_MAX = 40
MAX_SIDE = 64
LIMITS = {"caption_max_chars": CAPTION_MAX, "max_image_side": MAX_SIDE}
OK = None

MODES = ["RGB", "L", "LA", "P", "P-transparent", "RGBA", "CMYK", "I;16", "1"]
# file in images/ -> the reason its rows get (None: a valid image)
FILES = {
    **{f"mode-{m.replace(';', '')}.{'jpg' if m == 'CMYK' else 'png'}": OK for m in MODES},
    "zero.jpg": "empty_file",
    "truncated.jpg": "truncated_image",
    "text.jpg": "not_an_image",
    "bomb.png": "decompression_bomb",
    "big.png": "image_too_large",
    "tiny.png": "image_too_small",
    "flat.png": "constant_image",
    "link-in.png": OK,  # a symlink to a valid image inside the root
    "link-out.jpg": "path_escapes_root",  # a symlink to a file outside the root
}


def build_pool(base: Path) -> dict[str, str | None]:
    """Files under ``base/set`` (the captions folder, with ``images/``) and one outside it;
    returns every way a row may name an image -> the reason its rows get."""
    folder, images = base / "set", base / "set" / "images"
    images.mkdir(parents=True)
    for mode in MODES:
        name = f"mode-{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
        if mode == "RGB":
            save_jpeg(images / name, size=(40, 48))
        else:
            image_in_mode(images / name, mode)
    (images / "zero.jpg").write_bytes(b"")
    truncated_jpeg(images / "truncated.jpg")
    (images / "text.jpg").write_text("not an image at all")
    decompression_bomb_png(images / "bomb.png")
    Image.fromarray(textured((80, 70), 1)).save(images / "big.png")
    Image.fromarray(textured((4, 4), 2)).save(images / "tiny.png")
    Image.new("RGB", (32, 32), (90, 90, 90)).save(images / "flat.png")
    save_jpeg(base / "outside.jpg", seed=7)
    (images / "link-in.png").symlink_to(images / "mode-RGBA.png")
    (images / "link-out.jpg").symlink_to(base / "outside.jpg")
    save_jpeg(folder / "top.jpg", seed=8)

    refs: dict[str, str | None] = {}
    for name, reason in FILES.items():
        refs[name] = reason  # bare: found in images/ (the Flickr8k layout)
        refs[f"images/{name}"] = reason  # relative to the captions file
    refs.update({
        "top.jpg": OK, "images/../top.jpg": OK, str(images / "mode-L.png"): OK,  # absolute, inside
        "../outside.jpg": "path_escapes_root", str(base / "outside.jpg"): "path_escapes_root",
        "images/../../outside.jpg": "path_escapes_root", "../../../../etc/passwd": "path_escapes_root",
        "nope.jpg": "missing_file", "images/nope.jpg": "missing_file",
    })
    return refs


@pytest.fixture(scope="module")
def pool():
    base = Path(tempfile.mkdtemp(prefix="ingest-properties-"))
    try:
        yield base, build_pool(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------- generated rows

TEXT = st.text(alphabet=st.sampled_from(list("abc xyzé日\ufffd\n\x00,\"'")), min_size=0, max_size=12)
BAD_BYTES = st.sampled_from([b"\xff", b"\xe9", b"\x80", b"\xc3", b"\xed\xa0\x80"])  # the last: a UTF-8 surrogate


@dataclass
class Row:
    image: str
    text: str  # the caption as valid text
    bad: bytes = b""  # bytes appended to the caption that are not UTF-8
    malformed: bool = False


@st.composite
def rows(draw, refs: list[str]) -> list[Row]:
    out: list[Row] = []
    for _ in range(draw(st.integers(1, 8))):
        if out and draw(st.integers(0, 5)) == 0:  # the same row again
            out.append(out[draw(st.integers(0, len(out) - 1))])
            continue
        kind = draw(st.sampled_from(["text", "text", "text", "blank", "long", "bad"]))
        text = {"blank": draw(st.sampled_from(["", "   ", "\n"])), "long": "y" * (CAPTION_MAX + 1)}.get(kind)
        out.append(Row(image=draw(st.sampled_from(refs)), text=text if text is not None else draw(TEXT),
                       bad=draw(BAD_BYTES) if kind == "bad" else b"",
                       malformed=draw(st.integers(0, 7)) == 0))
    return out


def csv_bytes(rows: list[Row]) -> bytes:
    lines = [b"image,caption"]
    for row in rows:
        caption = (row.text.encode() + row.bad).replace(b'"', b'""')
        lines.append(row.image.encode() + b',"' + caption + b'"' + (b",extra" if row.malformed else b""))
    return b"\n".join(lines) + b"\n"


def jsonl_bytes(rows: list[Row]) -> bytes:
    lines = []
    for row in rows:
        if row.malformed:  # a caption that is not a string
            lines.append(json.dumps({"image": row.image, "caption": 5}).encode())
            continue
        caption = json.dumps(row.text).encode()[:-1] + row.bad + b'"'  # raw bytes inside the string
        lines.append(b'{"image": ' + json.dumps(row.image).encode() + b', "caption": ' + caption + b"}")
    return b"\n".join(lines) + b"\n"


def expected(rows: list[Row], refs: dict[str, str | None], data_format: str) -> list[tuple[set[str], tuple]]:
    """For each row: the reasons it must be rejected with (empty: accepted) and its (image id,
    caption) as the ingest must store it."""
    seen, out = set(), []
    for row in rows:
        caption = (row.text.encode() + row.bad).decode("utf-8", "replace").strip()
        bad = bool(row.bad)
        if row.malformed and data_format == "jsonl":  # written without its caption
            caption, bad = "", False
        reasons = set()
        if row.malformed:
            reasons.add("malformed_row")
        if bad:
            reasons.add("invalid_utf8")
        if not reasons:
            if refs[row.image]:
                reasons.add(refs[row.image])
            if not caption:
                reasons.add("empty_caption")
            elif len(caption) > CAPTION_MAX:
                reasons.add("caption_too_long")
        key = (row.image, caption)
        if key in seen:
            reasons.add("duplicate_sample_id")
        seen.add(key)
        out.append((reasons, key))
    return out


# ----------------------------------------------------------------------------- running the ingest


@dataclass
class Outcome:
    pairs: pd.DataFrame
    rejected: pd.DataFrame
    report: dict
    files: dict[str, bytes]  # every file written (shards, index, pairs table, rejected table)


def run(base: Path, data_format: str, payload: bytes, chunk_rows: int, run_name: str) -> Outcome:
    captions = base / "set" / f"captions.{data_format}"
    captions.write_bytes(payload)
    work = base / "runs" / run_name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = DataConfig(format=data_format, path=str(captions), image_size=16, max_pairs=None,
                        max_reject_fraction=1.0, rows_per_shard=3, chunk_rows=chunk_rows,
                        scratch_dir=str(work), validation=LIMITS)
    result = ingest(config, work / "staged", progress=False)
    buffer = io.BytesIO()
    result.rejected.to_parquet(buffer, index=False)
    files = {str(p.relative_to(work)): p.read_bytes() for p in sorted((work / "staged").rglob("*")) if p.is_file()}
    files["pairs.parquet"] = staged_pairs_path(work / "staged").read_bytes()
    files["rejected.parquet"] = buffer.getvalue()
    return Outcome(result.pairs, result.rejected, result.report, files)


def comparable(report: dict) -> dict:
    """The report without what depends on the number of chunks (GX's per-batch counts, timing)."""
    return {k: v for k, v in report.items() if k != "expectations"}


FORMATS = st.sampled_from(["csv", "jsonl"])


@PROFILE
@given(data=st.data(), data_format=FORMATS)
def test_every_row_is_accepted_or_rejected_with_its_reasons(pool, data, data_format):
    base, refs = pool
    generated = data.draw(rows(sorted(refs)), label="rows")
    chunk_rows = data.draw(st.integers(1, len(generated) + 1), label="chunk_rows")
    payload = csv_bytes(generated) if data_format == "csv" else jsonl_bytes(generated)
    outcome = run(base, data_format, payload, chunk_rows, "oracle")
    oracle = expected(generated, refs, data_format)

    # accepted + rejected = input, and exactly the rows without a reason are accepted (in order)
    assert len(outcome.pairs) + len(outcome.rejected) == len(generated) == outcome.report["input_rows"]
    assert list(outcome.rejected["ordinal"]) == [i for i, (reasons, _) in enumerate(oracle) if reasons]
    assert list(zip(outcome.pairs["image_id"], outcome.pairs["caption"])) == [
        key for reasons, key in oracle if not reasons]
    # each rejected row carries the oracle's reasons, read-time problems included
    for ordinal, given_reasons in zip(outcome.rejected["ordinal"], outcome.rejected["reasons"]):
        missing = oracle[ordinal][0] - set(given_reasons.split(";"))
        assert not missing, (ordinal, generated[ordinal], given_reasons)
    # an accepted caption is one the input held as valid UTF-8 (so U+FFFD only when written so)
    accepted_rows = [row for (reasons, _), row in zip(oracle, generated) if not reasons]
    for caption, row in zip(outcome.pairs["caption"], accepted_rows, strict=True):
        assert not row.bad and caption == row.text.strip()
        assert "\ufffd" not in caption or "\ufffd" in row.text


@PROFILE
@given(data=st.data(), data_format=FORMATS)
def test_same_input_same_bytes_and_the_chunk_size_changes_nothing(pool, data, data_format):
    base, refs = pool
    generated = data.draw(rows(sorted(refs)), label="rows")
    chunk_rows = data.draw(st.integers(1, len(generated)), label="chunk_rows")
    payload = csv_bytes(generated) if data_format == "csv" else jsonl_bytes(generated)
    whole = run(base, data_format, payload, len(generated), "whole")
    again = run(base, data_format, payload, len(generated), "again")
    assert whole.files == again.files  # shards, index.json, pairs and rejected tables, byte for byte
    assert json.dumps(comparable(whole.report)) == json.dumps(comparable(again.report))

    chunked = run(base, data_format, payload, chunk_rows, "chunked")
    pd.testing.assert_frame_equal(whole.pairs, chunked.pairs)
    pd.testing.assert_frame_equal(whole.rejected, chunked.rejected)
    assert comparable(whole.report) == comparable(chunked.report)
    shards = {k: v for k, v in whole.files.items() if not k.endswith(".parquet")}
    assert shards == {k: v for k, v in chunked.files.items() if not k.endswith(".parquet")}
