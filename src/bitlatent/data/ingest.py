"""Streaming ingest: source rows → decoded images → Great Expectations validation → shards.

Memory is bounded by one chunk of rows plus one shard buffer per split, whatever the
number of pairs: accepted pairs are streamed to a Parquet file (a row group per chunk). Every input row ends either in the pairs table or in the rejected table
with its reasons; ``check_accounting`` proves it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from bitlatent.data.config import DataConfig
from bitlatent.data.images import DecodedImage, decode_image_file, locate_image, pixel_stats
from bitlatent.data.records import RawPair
from bitlatent.data.shards import ShardWriter
from bitlatent.data.sources import READERS
from bitlatent.data.splits import assign_split
from bitlatent.data.synthetic import SyntheticConfig, iter_synthetic_pairs
from bitlatent.data.validation import ChunkValidator, ValidationLimits

log = logging.getLogger(__name__)

PAIR_COLUMNS = ["sample_id", "image_id", "caption", "split", "shard", "row", "attributes"]
REJECTED_COLUMNS = ["ordinal", "sample_id", "image_id", "image_path", "caption", "reasons", "detail"]
PAIRS_SCHEMA = pa.schema([("sample_id", pa.string()), ("image_id", pa.string()), ("caption", pa.string()),
                          ("split", pa.string()), ("shard", pa.int32()), ("row", pa.int32()),
                          ("attributes", pa.string())])


def staged_pairs_path(staging: Path) -> Path:
    """Where the pairs table of a staging folder is written, beside (not inside) the shards."""
    return staging.with_name(f"{staging.name}.pairs.parquet")


@dataclass
class IngestResult:
    pairs_path: Path  # Parquet, one row per accepted (image, caption): PAIR_COLUMNS, streamed to disk
    rejected: pd.DataFrame  # one row per rejected input row: REJECTED_COLUMNS
    report: dict  # validation.json
    shard_index: dict  # the staged shards' index.json

    @property
    def pairs(self) -> pd.DataFrame:
        """The accepted pairs, read back from ``pairs_path``."""
        return pd.read_parquet(self.pairs_path)


def iter_raw_pairs(config: DataConfig) -> Iterator[RawPair]:
    """The configured source's rows, at most ``max_pairs`` of them."""
    if config.format == "synthetic":
        options = {**config.synthetic, "image_size": config.image_size}
        if config.max_pairs is not None:
            options["num_pairs"] = config.max_pairs
        return iter_synthetic_pairs(SyntheticConfig.from_dict(options))
    path = Path(config.path)
    if not path.exists():
        raise FileNotFoundError(f"data.path {path} does not exist (format {config.format})")
    root = Path(config.image_root) if config.image_root else None
    rows = READERS[config.format](path, root)
    return islice(rows, config.max_pairs) if config.max_pairs is not None else rows


def sample_id_of(image_id: str, caption: str | None) -> str:
    """Stable id of an (image, caption) pair: the same pair twice gets the same id."""
    key = f"{image_id}\x1f{caption or ''}".encode("utf-8", "surrogateescape")
    return hashlib.blake2b(key, digest_size=8).hexdigest()


@dataclass(frozen=True)
class _Image:
    """What the ingest knows about one row's image: decoded (or why not), its statistics, and the
    root its file was found under."""

    decoded: DecodedImage
    mean: float = float("nan")  # pixel_stats of the resized image, NaN when not decoded
    std: float = float("nan")
    root: str | None = None  # the image root (as configured) the file was read from


@dataclass(frozen=True)
class _Placed:
    """Where an accepted image was written, for the later rows that share it."""

    split: str
    shard: int
    row: int
    image: _Image


def _read_image(pair: RawPair, config: DataConfig) -> _Image:
    """Decode a row's image: rendered pixels as they are, a file found under the row's roots."""
    if pair.pixels is not None:
        side = float(pair.pixels.shape[0])
        return _Image(DecodedImage("ok", pixels=pair.pixels, width=side, height=side), *pixel_stats(pair.pixels))
    location = locate_image(pair.roots, pair.image_path or "")
    if location.status != "ok":
        return _Image(DecodedImage(location.status, detail=location.detail))
    decoded = decode_image_file(location.path, config.image_size, config.max_image_pixels)
    stats = pixel_stats(decoded.pixels) if decoded.pixels is not None else (float("nan"), float("nan"))
    return _Image(decoded, *stats, root=str(location.root))


class _Ingest:
    """State of one streaming ingest (seen ids, where each accepted image was written)."""

    def __init__(self, config: DataConfig, staging: Path):
        self.config = config
        self.validator = ChunkValidator(ValidationLimits.from_dict(config.validation))
        self.writer = ShardWriter(staging, config.image_size, config.rows_per_shard)
        self.seen: set[bytes] = set()  # digests of sample ids seen so far
        self.located: dict[str, _Placed] = {}  # image id -> where its accepted image was written
        self.pairs_path = staged_pairs_path(Path(staging))
        self.pairs_writer = pq.ParquetWriter(self.pairs_path, PAIRS_SCHEMA)  # row group per chunk
        self.split_counts: Counter = Counter()
        self.root_rows: Counter = Counter()  # image root -> rows whose image file was found under it
        self.accepted_rows = 0
        self.rejected: list[pd.DataFrame] = []
        self.input_rows = 0

    def image_of(self, pair: RawPair, chunk_images: dict[str, _Image]) -> _Image:
        """The row's image: a problem found while reading the row always wins (whatever image
        the row shares with earlier ones); else an image already written or decoded in this
        chunk is reused; else it is read."""
        for root in pair.roots:
            self.root_rows.setdefault(str(root), 0)
        if pair.problems:
            return _Image(DecodedImage(pair.problems[0], detail=";".join(pair.problems)))
        if pair.pixels is None and pair.image_id in self.located:
            image = self.located[pair.image_id].image
        elif pair.pixels is None and pair.image_id in chunk_images:
            image = chunk_images[pair.image_id]
        else:
            image = _read_image(pair, self.config)
            if pair.pixels is None:  # rendered images are unique per row: nothing to remember
                chunk_images[pair.image_id] = image
        if image.root is not None:
            self.root_rows[image.root] += 1
        return image

    def run_chunk(self, chunk: list[RawPair]) -> None:
        rows, images, chunk_images = [], [], {}
        for pair in chunk:
            caption = pair.caption.strip() if pair.caption is not None else None
            sample_id = sample_id_of(pair.image_id, caption)
            digest = bytes.fromhex(sample_id)
            seen_before = digest in self.seen
            self.seen.add(digest)
            image = self.image_of(pair, chunk_images)
            images.append(image)
            rows.append({
                "sample_id": sample_id, "caption": caption,
                "caption_chars": len(caption) if caption else 0, "seen_before": seen_before,
                "image_status": image.decoded.status, "width": image.decoded.width,
                "height": image.decoded.height, "pixel_std": image.std, "pixel_mean": image.mean,
            })
        reasons = self.validator.validate(pd.DataFrame(rows))
        self.input_rows += len(chunk)

        accepted, rejected = [], []
        for pair, image, row, why in zip(chunk, images, rows, reasons):
            why = why + [problem for problem in pair.problems if problem not in why]
            if why:
                rejected.append({
                    "ordinal": pair.ordinal, "sample_id": row["sample_id"], "image_id": pair.image_id,
                    "image_path": pair.image_path, "caption": row["caption"],
                    "reasons": ";".join(why), "detail": image.decoded.detail,
                })
                continue
            place = self.located.get(pair.image_id) if pair.pixels is None else None
            if place is None:
                split = pair.forced_split or assign_split(
                    pair.image_id, self.config.splits, self.config.split_seed)
                shard, index = self.writer.add(split, image.decoded.pixels)
                place = _Placed(split, shard, index, replace(image, decoded=DecodedImage(
                    "ok", width=image.decoded.width, height=image.decoded.height)))  # pixels are in the shard
                if pair.pixels is None:
                    self.located[pair.image_id] = place
            accepted.append({
                "sample_id": row["sample_id"], "image_id": pair.image_id, "caption": row["caption"],
                "split": place.split, "shard": place.shard, "row": place.row,
                "attributes": json.dumps(pair.attributes) if pair.attributes is not None else None,
            })
        if accepted:
            table = pd.DataFrame(accepted, columns=PAIR_COLUMNS)
            self.pairs_writer.write_table(pa.Table.from_pandas(table, schema=PAIRS_SCHEMA, preserve_index=False))
            self.split_counts.update(table["split"])
            self.accepted_rows += len(table)
        self.rejected.append(pd.DataFrame(rejected, columns=REJECTED_COLUMNS))

    def finish(self) -> IngestResult:
        shard_index = self.writer.close()
        self.pairs_writer.close()
        frames = [r for r in self.rejected if len(r)]
        rejected = (pd.concat(frames, ignore_index=True) if frames
                    else pd.DataFrame(columns=REJECTED_COLUMNS)).astype({"ordinal": "int64"})
        return IngestResult(self.pairs_path, rejected, build_report(self, rejected, shard_index), shard_index)


def build_report(state: _Ingest, rejected: pd.DataFrame, shard_index: dict) -> dict:
    """The content of ``validation.json``."""
    reasons = Counter(r for joined in rejected["reasons"] for r in joined.split(";"))
    return {
        "source": {"format": state.config.format, "path": state.config.path},
        "input_rows": state.input_rows,
        "accepted_rows": state.accepted_rows,
        "rejected_rows": int(len(rejected)),
        "rejected_fraction": len(rejected) / state.input_rows if state.input_rows else 0.0,
        "reasons": dict(reasons.most_common()),
        "images": {split: info["num_images"] for split, info in shard_index["splits"].items()},
        "pairs_per_split": dict(sorted((k, int(v)) for k, v in state.split_counts.items())),
        "image_roots": {root: int(rows) for root, rows in state.root_rows.items()},
        "expectations": state.validator.summary(),
    }


def ingest(config: DataConfig, staging: Path, progress: bool = True) -> IngestResult:
    """Read, decode, validate and shard every row of the configured source."""
    state = _Ingest(config, staging)
    rows = iter_raw_pairs(config)
    total = config.max_pairs if config.format == "synthetic" else None
    with tqdm(total=total, unit="pair", desc=f"ingest {config.format}", disable=not progress) as bar:
        while chunk := list(islice(rows, config.chunk_rows)):
            state.run_chunk(chunk)
            bar.update(len(chunk))
            bar.set_postfix(rejected=sum(len(r) for r in state.rejected))
    return state.finish()


def check_accounting(report: dict, accepted_rows: int, rejected: pd.DataFrame, max_reject_fraction: float) -> None:
    """Fail unless accepted + rejected = input and the rejected fraction is within budget."""
    if accepted_rows + len(rejected) != report["input_rows"] or accepted_rows != report["accepted_rows"]:
        raise RuntimeError(
            f"row accounting broken: {accepted_rows} accepted + {len(rejected)} rejected "
            f"!= {report['input_rows']} input rows"
        )
    if report["input_rows"] == 0:
        raise ValueError("the source yielded no rows: check data.format and data.path")
    fraction = len(rejected) / report["input_rows"]
    if fraction > max_reject_fraction:
        top = ", ".join(f"{reason}: {count}" for reason, count in list(report["reasons"].items())[:5])
        raise ValueError(
            f"{len(rejected)} of {report['input_rows']} rows rejected ({fraction:.1%}), above "
            f"data.max_reject_fraction={max_reject_fraction:.1%}. Top reasons: {top}. "
            f"Every rejected row is in the rejected table (catalog entry rejected_pairs)."
        )
