"""Data sets as device-ready tensors: MNIST through torchvision's real loader, and the MNIST-rot replica.

MNIST is read with ``torchvision.datasets.MNIST`` and handed on as one uint8 tensor, never as a per-sample
PIL pipeline. Where it comes from, in order:

1. ``$ROTBOOK_DATA/MNIST/raw/`` with torchvision's uncompressed IDX files;
2. the same folder with the gzipped files (as in ``../shared/data``): unpacked once into
   ``$ROTBOOK_CACHE/MNIST/raw/`` (the data root may be read-only);
3. torchvision's download into ``$ROTBOOK_CACHE`` (networked machines), with a short socket timeout;
4. otherwise :class:`rotcore.paths.MissingDataError`, within seconds, naming ``ROTBOOK_DATA``.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import shutil
import socket
from pathlib import Path

import numpy as np
import torch

from rotcore import paths
from rotcore.rotate import random_angles, rotate_batch

Tensor = torch.Tensor

MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
DOWNLOAD_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True)
class Images:
    """A labelled image set held as tensors.

    Attributes:
        x: ``(N, C, H, W)`` float32 in [0, 1].
        y: ``(N,)`` int64 class labels.
        angle_deg: ``(N,)`` float32 angle each image was rotated by, or ``None`` for upright images.
    """

    x: Tensor
    y: Tensor
    angle_deg: Tensor | None = None

    def __post_init__(self):
        if len(self.x) != len(self.y) or (self.angle_deg is not None and len(self.angle_deg) != len(self.y)):
            raise ValueError("x, y and angle_deg must have the same length")

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Images:
        move = (lambda t: None if t is None else t.to(device))  # noqa: E731
        return Images(move(self.x), move(self.y), move(self.angle_deg))

    def take(self, index: Tensor | slice) -> Images:
        a = None if self.angle_deg is None else self.angle_deg[index]
        return Images(self.x[index], self.y[index], a)

    def head(self, n: int | None) -> Images:
        """The first ``n`` images (all of them for ``None``)."""
        return self if n is None or n >= len(self) else self.take(slice(0, n))

    def where(self, mask: Tensor) -> Images:
        return self.take(mask.nonzero(as_tuple=True)[0])

    def rotated(self, angle_deg: float | Tensor, **rotate_kwargs) -> Images:
        """All images rotated (see :func:`rotcore.rotate.rotate_batch`); ``angle_deg`` records the angle."""
        a = torch.as_tensor(angle_deg, dtype=torch.float32).expand(len(self)).to(self.y.device)
        return Images(rotate_batch(self.x, a, **rotate_kwargs), self.y, a.clone())


# ---------------------------------------------------------------------------------------------------------
# MNIST


def _has(folder: Path, suffix: str = "") -> bool:
    return all((folder / (name + suffix)).is_file() for name in MNIST_FILES)


def _unpack_gz(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        target = dst / name
        if target.is_file():
            continue
        tmp = target.with_suffix(".part")
        with gzip.open(src / f"{name}.gz", "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        tmp.replace(target)


def mnist_root(*, download: bool = True) -> Path:
    """A folder ``R`` such that ``torchvision.datasets.MNIST(R)`` loads without network (see module doc)."""
    data, cache = paths.data_root(), paths.cache_root()
    if _has(data / "MNIST" / "raw"):
        return data
    if _has(cache / "MNIST" / "raw"):
        return cache
    if _has(data / "MNIST" / "raw", ".gz"):
        _unpack_gz(data / "MNIST" / "raw", cache / "MNIST" / "raw")
        return cache
    looked = f"{data / 'MNIST' / 'raw'} (ROTBOOK_DATA) and {cache / 'MNIST' / 'raw'} (ROTBOOK_CACHE)"
    if not download:
        raise paths.MissingDataError(
            f"MNIST not found in {looked}. Set ROTBOOK_DATA to a folder holding MNIST/raw/ with torchvision's "
            "IDX files (plain or .gz), or allow the download."
        )
    from torchvision.datasets import MNIST

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        MNIST(str(cache), train=True, download=True)
        MNIST(str(cache), train=False, download=True)
    except Exception as err:  # URLError, timeouts, bad checksums: all mean "no MNIST from the network"
        raise paths.MissingDataError(
            f"MNIST not found in {looked}, and torchvision's download failed ({type(err).__name__}: {err}). "
            "Offline, set ROTBOOK_DATA to a folder holding MNIST/raw/ with the four IDX files "
            "(plain or .gz, torchvision's names), e.g. ROTBOOK_DATA=../shared/data."
        ) from None
    finally:
        socket.setdefaulttimeout(old)
    return cache


MNIST_HOSTS = (("ossci-datasets.s3.amazonaws.com", 443),)


def _reachable(hosts, timeout_s: float = 1.0) -> bool:
    import os

    if os.environ.get("ROTBOOK_OFFLINE"):
        return False
    for host, port in hosts:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            return True
        except OSError:
            continue
    return False


def check_mnist() -> None:
    """Raise :class:`rotcore.paths.MissingDataError` at once when MNIST is neither on disk (``ROTBOOK_DATA``,
    ``ROTBOOK_CACHE``) nor downloadable (torchvision's mirror unreachable within a second, or
    ``ROTBOOK_OFFLINE`` set). Reads no file: what ``rotbook run`` checks before any notebook starts."""
    data, cache = paths.data_root(), paths.cache_root()
    if any(_has(d / "MNIST" / "raw", ext) for d in (data, cache) for ext in ("", ".gz")):
        return
    if _reachable(MNIST_HOSTS):
        return
    raise paths.MissingDataError(
        f"MNIST not found in {data / 'MNIST' / 'raw'} (ROTBOOK_DATA) or {cache / 'MNIST' / 'raw'} "
        "(ROTBOOK_CACHE), and torchvision's download server cannot be reached. Set ROTBOOK_DATA to a folder "
        "holding MNIST/raw/ with the four IDX files (plain or .gz, torchvision's names), e.g. "
        "ROTBOOK_DATA=../shared/data.")


def check_folder(folder: Path, what: str, *, needs: str = "", hint: str = "") -> None:
    """Raise :class:`rotcore.paths.MissingDataError` naming ``what`` when ``folder`` (or ``folder/needs``) is
    missing; ``hint`` says what to set."""
    target = folder / needs if needs else folder
    if not target.exists():
        raise paths.MissingDataError(f"{what} not found: {target} does not exist. " + (hint or (
            "Set ROTBOOK_DATA to the folder that holds it (e.g. ROTBOOK_DATA=../shared/data).")))


@functools.lru_cache(maxsize=4)
def _load_mnist_cached(root: str, train: bool) -> tuple[Tensor, Tensor]:
    from torchvision.datasets import MNIST

    ds = MNIST(root, train=train, download=False)
    return ds.data.clone(), ds.targets.clone()


def load_mnist(split: str = "train", *, download: bool = True) -> Images:
    """MNIST ``"train"`` (60,000) or ``"test"`` (10,000) as :class:`Images` on the CPU.

    Treat the returned tensors as read-only: they are cached per process.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; choose 'train' or 'test'")
    data, targets = _load_mnist_cached(str(mnist_root(download=download)), split == "train")
    return Images(data.unsqueeze(1).float().div_(255.0), targets.long())


def split_train_val(images: Images, n_val: int, *, seed: int = 0) -> tuple[Images, Images]:
    """A seeded random split into ``(train, val)`` with ``n_val`` validation images."""
    if not 0 <= n_val < len(images):
        raise ValueError(f"n_val={n_val} must be in [0, {len(images)})")
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images.take(perm[n_val:]), images.take(perm[:n_val])


def subset(images: Images, n: int | None, *, seed: int = 0) -> Images:
    """A seeded random subset of ``n`` images (all for ``None``), e.g. to shrink a profile."""
    if n is None or n >= len(images):
        return images
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images.take(perm[:n])


MNIST_TRAIN_SIZE = 60_000  # MNIST's train split; its test split has 10,000


def mnist_train_count(train_size: int | None, val_size: int) -> int:
    """How many training digits :func:`mnist_splits` gives for these sizes, from the sizes alone (no data read):
    ``train_size`` capped at what is left after ``val_size``, or all of it for ``None``."""
    rest = MNIST_TRAIN_SIZE - val_size
    return rest if train_size is None else min(train_size, rest)


def mnist_splits(*, train_size: int | None, val_size: int, test_size: int | None = None
                 ) -> tuple[Images, Images, Images]:
    """The project's upright MNIST splits ``(train, val, test)``, the same in every study and judge.

    ``val_size`` images are carved out of MNIST train (seed 0), ``train_size`` of the rest are kept
    (seed 1; ``None`` = all) and ``test_size`` of MNIST test (seed 2; ``None`` = all 10,000). A smaller
    size always picks a subset of a larger one's images.
    """
    train, val = split_train_val(load_mnist("train"), val_size, seed=0)
    return subset(train, train_size, seed=1), val, subset(load_mnist("test"), test_size, seed=2)


def binarize(x: Tensor, *, seed: int | None = None) -> Tensor:
    """Stochastic binarisation: each pixel is 1 with probability equal to its intensity in [0, 1].

    ``seed=None`` draws from the global RNG on ``x``'s device ("dynamic" binarisation, a fresh draw per
    batch); an integer gives a fixed draw (a fixed binarised test set), made on the CPU so that it is the same
    on every device. Same shape and dtype as ``x``.
    """
    if seed is None:
        return torch.bernoulli(x)
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x.detach().cpu(), generator=g).to(x.device)


# ---------------------------------------------------------------------------------------------------------
# The MNIST-rot replica

MNIST_ROT_SIZES = {"train": 10_000, "val": 2_000, "test": 50_000}


def mnist_rot_replica(*, seed: int = 0, interpolation: str = "bilinear", rotate: bool = True,
                      download: bool = True) -> dict[str, Images]:
    """A replica of the MNIST-rot protocol (Larochelle et al. 2007), built from MNIST with our rotation code.

    The original MNIST-rot files (12,000 training and 50,000 test digits, each rotated by an angle drawn
    uniformly from [0, 2π)) can no longer be downloaded, so we rebuild the protocol: the 70,000 MNIST
    digits (train and test pooled, as the original drew from both) are permuted with ``seed``; the first
    12,000 become ``train`` (10,000) and ``val`` (2,000), the next 50,000 ``test``. Every image is rotated by
    its own uniform angle in [0°, 360°) with :func:`rotcore.rotate.rotate_batch` (``interpolation``, zero
    padding). Same seed, same tensors. Not the original images or angles: numbers are comparable in
    protocol, not image for image. ``rotate=False`` returns the same digits upright (``angle_deg`` still
    records the angle each would get), to compare a model on the same digits with and without rotation.
    """
    train, test = load_mnist("train", download=download), load_mnist("test", download=download)
    x = torch.cat([train.x, test.x])
    y = torch.cat([train.y, test.y])
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    angles = random_angles(len(y), generator=g)
    out, start = {}, 0
    for name, n in MNIST_ROT_SIZES.items():
        idx = perm[start : start + n]
        a = angles[start : start + n]
        xs = rotate_batch(x[idx], a, interpolation=interpolation) if rotate else x[idx]
        out[name] = Images(xs, y[idx], a)
        start += n
    return out


# ---------------------------------------------------------------------------------------------------------
# Photo folders (natural photographs; split by photo, never by rotated copy). One loader: load_photo decodes
# a file, load_photo_squares stacks resized centre squares of many.

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclasses.dataclass(frozen=True)
class PhotoRecord:
    """One source photograph. ``split`` is ``"train"``/``"val"`` (from the manifest, or assigned by hash)."""

    path: Path
    source: str
    license: str
    split: str


def photos_root() -> Path:
    """``$ROTBOOK_DATA/photos`` (natural photographs with a ``MANIFEST.tsv``)."""
    return paths.data_root() / "photos"


def _hash_split(name: str, val_fraction: float) -> str:
    import hashlib

    h = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def photo_records(root: Path | None = None, *, val_fraction: float = 0.2) -> list[PhotoRecord]:
    """The photos of a folder, sorted by file name.

    With a ``MANIFEST.tsv`` (columns ``file``, ``source``, ``license``, ``suggested_split``) its split is used;
    any image file without a manifest row, or a folder without a manifest, gets a stable split from a hash
    of its file name (``val_fraction`` of them ``"val"``). The split is by photo, so rotated copies of one
    photo never sit on both sides.
    """
    import csv

    root = Path(root) if root is not None else photos_root()
    if not root.is_dir():
        raise paths.MissingDataError(
            f"no photo folder at {root}. Set ROTBOOK_DATA to a folder with photos/ (e.g. ../shared/data), "
            "or pass a folder of images.")
    manifest = {}
    if (root / "MANIFEST.tsv").is_file():
        with open(root / "MANIFEST.tsv", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                manifest[row["file"]] = row
    records = []
    for p in sorted(root.iterdir()):
        if p.suffix.lower() not in PHOTO_EXTENSIONS:
            continue
        row = manifest.get(p.name, {})
        split = row.get("suggested_split") or _hash_split(p.name, val_fraction)
        records.append(PhotoRecord(p, row.get("source", "local folder"), row.get("license", "unknown"), split))
    if not records:
        raise paths.MissingDataError(f"no images ({', '.join(PHOTO_EXTENSIONS)}) in {root}")
    return records


def load_photo(path: Path, size: int | None = None) -> Tensor:
    """One photo as a ``(3, H, W)`` uint8 tensor; with ``size``, the shorter side is resized to ``size``."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None:
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


def center_square(img: Tensor, size: int) -> Tensor:
    """The central ``size`` × ``size`` crop of ``(..., H, W)``."""
    h, w = img.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"image {h}×{w} is smaller than the crop {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return img[..., top : top + size, left : left + size]


def load_photo_squares(records: list[PhotoRecord], size: int) -> Tensor:
    """Every photo resized (shorter side ``size``) and centre-cropped: ``(N, 3, size, size)`` uint8.

    Keep photos as uint8 on the device and convert per batch: 492 photos at 256 px are ~100 MB.
    """
    return torch.stack([center_square(load_photo(r.path, size), size) for r in records])


# ---------------------------------------------------------------------------------------------------------
# Crops and tiles of image batches, on their device


def random_crop_batch(x: Tensor, size: int, *, generator: torch.Generator | None = None) -> Tensor:
    """One random ``size`` × ``size`` crop per image of ``(B, C, H, W)``, on ``x``'s device, in one gather.

    Offsets are uniform over the valid positions; they come from ``generator`` if given, else from the global
    RNG of ``x``'s device (which :func:`rotcore.train.fit` seeds and checkpoints).
    """
    b, _, h, w = x.shape
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the images ({h}×{w})")
    dev = generator.device if generator is not None else x.device
    top = torch.randint(0, h - size + 1, (b,), generator=generator, device=dev).to(x.device)
    left = torch.randint(0, w - size + 1, (b,), generator=generator, device=dev).to(x.device)
    ar = torch.arange(size, device=x.device)
    rows = (top[:, None] + ar)[:, :, None]  # (B, size, 1)
    cols = (left[:, None] + ar)[:, None, :]  # (B, 1, size)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def tiles(x: Tensor, size: int) -> Tensor:
    """Non-overlapping ``size`` × ``size`` tiles of ``(B, C, H, W)`` (row-major per image), ``(B·nh·nw, C, size, size)``.

    Pixels beyond the last whole tile on the right/bottom are dropped.
    """
    b, c, h, w = x.shape
    nh, nw = h // size, w // size
    if nh == 0 or nw == 0:
        raise ValueError(f"tile {size} is larger than the images ({h}×{w})")
    t = x[:, :, : nh * size, : nw * size].reshape(b, c, nh, size, nw, size)
    return t.permute(0, 2, 4, 1, 3, 5).reshape(b * nh * nw, c, size, size)
