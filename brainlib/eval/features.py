"""Feature spaces for FID, KID, precision/recall and embeddings, with no download.

The default space is `SliceEncoder`: a small CNN trained here, on the real
training images of the dataset being evaluated, to tell AD from NC and, as a
self-supervised side task, which of four rotations an image was given (so the
features keep anatomy and texture, not only the class boundary). Its
penultimate layer (128 numbers) is the feature vector. It trains in seconds on
a CPU and is cached per dataset under `data/cache/encoders/` as safetensors
plus JSON, keyed by a hash of the training images, the held-out images, the
resolution and `ENCODER_RECIPE`.

Why this is fair to the floor: the encoder saw the real training images. The
generated images and the real held-out images were both unseen by it, and both
are compared against the same real training features, so neither side of
"generated vs floor" gets a home advantage.

Inception v3 (the usual FID space) is used only when torchvision's ImageNet
weights already sit in the local torch hub cache; it is never downloaded.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import inception_v3

from brainlib.atomic import atomic_write, atomic_write_json
from brainlib.data.cache import default_cache_dir
from brainlib.data.dataset import to_model_input
from brainlib.progress import progress_bar

ENCODER_NAME = "brainlib-slice-encoder"
ENCODER_RECIPE = 2  # bump when the architecture or training recipe changes: old caches are ignored
FEATURE_DIM = 128
MAX_ENCODER_RES = 64  # larger images are area-downsampled to this before encoding


# ----------------------------------------------------------------------
# Images in, images out

def images_hash(*arrays: torch.Tensor | np.ndarray) -> str:
    """A short sha256 of the raw bytes of the given arrays (images, labels...)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------
# The encoder

class SliceEncoder(nn.Module):
    """Conv stages halving the size down to 4 px, global average pool, 128-d features.

    Each stage is a strided 3x3 conv then a 3x3 conv at the new size (the
    full-resolution work is one cheap conv, which keeps training in seconds).
    Two heads on the features: AD/NC logits and rotation (0/90/180/270) logits.
    The same network with only the class head is the fixed classifier of the
    usefulness study (metrics.usefulness).
    """

    def __init__(self, res: int, *, rotation_head: bool = True):
        super().__init__()
        if res < 8 or res & (res - 1):
            raise ValueError(f"SliceEncoder needs a power-of-two size >= 8, got {res}")
        self.res = res
        n_stages = min(4, int(math.log2(res)) - 2)
        widths = [16, 32, 64, FEATURE_DIM][-n_stages:]
        layers, c_in = [], 1
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.trunk = nn.Sequential(*layers)
        self.class_head = nn.Linear(FEATURE_DIM, 2)
        self.rotation_head = nn.Linear(FEATURE_DIM, 4) if rotation_head else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_head(self.features(x))


def shift_and_jitter(x: torch.Tensor, gen: torch.Generator, *, max_shift: int = 2, jitter: float = 0.1) -> torch.Tensor:
    """Mild augmentation: shifts of up to `max_shift` px (edge padding) and a
    random intensity gain and offset of about `jitter`, per image."""
    n, _, s, _ = x.shape
    padded = F.pad(x, [max_shift] * 4, mode="replicate")
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=gen))
    rows = (dy[:, None] + torch.arange(s)[None]).view(n, 1, s, 1).expand(n, 1, s, s + 2 * max_shift)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(s)[None]).view(n, 1, 1, s).expand(n, 1, s, s)
    shifted = shifted.gather(3, cols)
    gain = 1 + jitter * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    offset = jitter * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    return shifted * gain + offset


def fit(model: nn.Module, n: int, batch_loss: Callable[[torch.Tensor], torch.Tensor], *, gen: torch.Generator,
        epochs: int, batch_size: int, lr: float, one_cycle: bool = False, progress: bool = False) -> None:
    """The small-CNN training loop of the encoder and the C2ST critic: Adam over a seeded
    shuffle of `n` examples per epoch, `batch_loss(indices)` per batch, batches of one
    skipped (BatchNorm needs two), optionally a one-cycle learning-rate schedule."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total_steps = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps) if one_cycle else None
    model.train()
    for _ in progress_bar(range(epochs), desc="train classifier", disable=not progress, leave=False):
        order = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            if len(idx) < 2:
                continue
            loss = batch_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()


def train_classifier(images: torch.Tensor, labels: torch.Tensor, *, res: int, epochs: int = 6, seed: int = 0,
                     rotation_task: bool = False, batch_size: int = 64, lr: float = 2e-3,
                     progress: bool = False) -> SliceEncoder:
    """Train a SliceEncoder on float images [N,1,res,res] in [-1,1] and labels (NC=0, AD=1).

    Seeded (same data and seed -> same weights on the CPU). With `rotation_task`
    a quarter of every batch is also shown rotated by a random multiple of 90
    degrees and the rotation head learns which; the class loss uses the upright images.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SliceEncoder(res, rotation_head=rotation_task)
    labels = torch.as_tensor(labels).long()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x = shift_and_jitter(images[idx], gen)
        loss = F.cross_entropy(model(x), labels[idx])
        if rotation_task:
            x = x[: max(2, len(x) // 4)]
            k = torch.randint(0, 4, (len(x),), generator=gen)
            rotated = x.clone()
            for r in (1, 2, 3):
                rotated[k == r] = torch.rot90(x[k == r], r, dims=(2, 3))
            loss = loss + F.cross_entropy(model.rotation_head(model.features(rotated)), k)
        return loss

    fit(model, len(images), batch_loss, gen=gen, epochs=epochs, batch_size=batch_size, lr=lr, one_cycle=True,
        progress=progress)
    return model.eval()


@torch.no_grad()
def predict_proba(model: SliceEncoder, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """P(AD) per image."""
    model.eval()
    out = [torch.softmax(model(images[i:i + batch_size]), dim=1)[:, 1] for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.no_grad()
def extract_features(model: SliceEncoder, images: torch.Tensor | np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Penultimate-layer features, float64 [N, 128]; images are resized to the encoder's size."""
    model.eval()
    x = to_model_input(images, model.res)
    out = [model.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros((0, FEATURE_DIM))


# ----------------------------------------------------------------------
# Cache

@dataclass
class Encoder:
    """A trained SliceEncoder and what it is: name, data hash, held-out accuracy."""
    model: SliceEncoder
    info: dict

    def features(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        return extract_features(self.model, images)


def encoder_cache_dir() -> Path:
    return default_cache_dir() / "encoders"


def encoder_res(image_res: int) -> int:
    return min(int(image_res), MAX_ENCODER_RES)


def load_or_train_encoder(train_images, train_labels, heldout_images, heldout_labels, *,
                          cache_dir: str | Path | None = None, epochs: int = 4, seed: int = 0,
                          progress: bool = False) -> Encoder:
    """The encoder for this dataset: from the cache if its key matches, else trained and cached.

    Images: uint8 or float in [-1,1], [N,S,S] or [N,1,S,S]; labels NC=0, AD=1.
    The key hashes the training set (images and labels), the held-out set, the
    encoder size, epochs, seed and ENCODER_RECIPE.
    """

    res = encoder_res(torch.as_tensor(train_images).shape[-1])
    x_train, x_held = to_model_input(train_images, res), to_model_input(heldout_images, res)
    y_train, y_held = torch.as_tensor(train_labels).long(), torch.as_tensor(heldout_labels).long()
    if len(x_train) != len(y_train) or len(x_held) != len(y_held):
        raise ValueError("encoder: images and labels differ in length")
    train_hash = images_hash(x_train.half(), y_train)
    key = images_hash(np.frombuffer(f"{train_hash}|{images_hash(x_held.half(), y_held)}|{res}|{epochs}|{seed}|"
                                    f"{ENCODER_RECIPE}".encode(), np.uint8))
    cache = Path(cache_dir) if cache_dir is not None else encoder_cache_dir()
    weights, meta = cache / f"{ENCODER_NAME}-{key}.safetensors", cache / f"{ENCODER_NAME}-{key}.json"
    if weights.exists() and meta.exists():
        try:
            info = json.loads(meta.read_text())
            model = SliceEncoder(res, rotation_head=True)
            model.load_state_dict(load_file(str(weights)))
            return Encoder(model.eval(), {**info, "from_cache": True})
        except Exception as e:  # any damaged cache entry (safetensors raises its own type): retrain
            print(f"encoder cache {weights} unusable ({e}); retraining")

    start = time.perf_counter()
    model = train_classifier(x_train, y_train, res=res, epochs=epochs, seed=seed, rotation_task=True,
                             progress=progress)
    seconds = time.perf_counter() - start
    accuracy = float(((predict_proba(model, x_held) > 0.5) == y_held.numpy()).mean()) if len(y_held) else None
    info = {"name": ENCODER_NAME, "recipe": ENCODER_RECIPE, "key": key, "train_set_hash": train_hash,
            "n_train": len(x_train), "n_heldout": len(x_held), "res": res, "feature_dim": FEATURE_DIM,
            "epochs": epochs, "seed": seed, "heldout_accuracy": accuracy, "train_seconds": round(seconds, 1)}
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, str(tmp)))
    atomic_write_json(meta, info)
    return Encoder(model, {**info, "from_cache": False})


# ----------------------------------------------------------------------
# Inception v3, only from the local cache

def inception_weights_path() -> Path | None:
    """torchvision's Inception v3 ImageNet weights in the local torch hub cache, if present."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(checkpoints.glob("inception_v3_google-*.pth")) if checkpoints.is_dir() else []
    return found[0] if found else None


class InceptionFeatures:
    """2048-d pool features of torchvision's Inception v3, loaded from a local file only."""

    def __init__(self, weights: Path):

        model = inception_v3(weights=None, aux_logits=True, init_weights=False)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.fc = nn.Identity()
        self.model = model.eval()
        self.weights = weights

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | np.ndarray, batch_size: int = 32) -> np.ndarray:
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = to_model_input(images)
        out = []
        for i in range(0, len(x), batch_size):
            b = F.interpolate(x[i:i + batch_size], size=(299, 299), mode="bilinear", align_corners=False)
            b = ((b + 1) / 2).expand(-1, 3, -1, -1)
            out.append(self.model((b - mean) / std))
        return torch.cat(out).double().numpy()


def load_inception() -> tuple[InceptionFeatures | None, str]:
    """(Inception features, note); (None, reason) when the weights are not in the local cache."""
    path = inception_weights_path()
    if path is None:
        return None, f"weights not in local cache ({Path(torch.hub.get_dir()) / 'checkpoints'}); not downloaded"
    try:
        return InceptionFeatures(path), f"torchvision inception_v3 from {path}"
    except (RuntimeError, OSError, ValueError) as e:
        return None, f"could not load {path}: {e}"
