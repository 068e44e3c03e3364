"""The in-project encoder: trains offline, separates classes, is cached per dataset; Inception only from disk."""
import json

import numpy as np
import pytest
import torch

from brainlib.data.dataset import to_model_input
from brainlib.eval import features as F
from brainlib.eval.metrics import fid


def two_class_images(n, res=16, seed=0):
    """NC: a small bright square; AD: a larger one (a crude 'ventricle' difference). uint8 [2n,res,res]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((2 * n, res, res), 40, dtype=torch.uint8)
    for i in range(2 * n):
        half = (2 if i < n else 5) + int(torch.randint(0, 2, (1,), generator=g))
        cy, cx = (int(v) for v in torch.randint(res // 2 - 2, res // 2 + 2, (2,), generator=g))
        x[i, max(cy - half, 0):cy + half, max(cx - half, 0):cx + half] = 200
    noise = torch.randint(0, 20, x.shape, generator=g, dtype=torch.uint8)
    return x + noise, torch.tensor([0] * n + [1] * n)


def test_to_model_input_converts_uint8_and_resizes():
    u8 = torch.tensor([[[0, 255], [255, 0]]], dtype=torch.uint8)
    x = to_model_input(u8)
    assert x.shape == (1, 1, 2, 2) and x.min() == -1 and x.max() == 1
    assert to_model_input(torch.zeros(3, 1, 32, 32), 16).shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match=r"\[N,S,S\] or \[N,1,S,S\]"):
        to_model_input(torch.zeros(2, 3, 8, 8))


def test_augment_keeps_shape_and_shifts():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(8, 1, 16, 16)
    x[:, :, 6:10, 6:10] = 1
    y = F.shift_and_jitter(x, g, max_shift=2, jitter=0.0)
    assert y.shape == x.shape and not torch.equal(y, x)
    assert torch.allclose(y.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # shifted, not cropped


def test_encoder_learns_classes_is_cached_and_reused(tmp_path):
    x, y = two_class_images(32, seed=0)
    xh, yh = two_class_images(16, seed=1)
    enc = F.load_or_train_encoder(x, y, xh, yh, cache_dir=tmp_path, epochs=3)
    assert enc.info["from_cache"] is False and enc.info["heldout_accuracy"] >= 0.9
    assert enc.info["name"] == F.ENCODER_NAME and enc.info["res"] == 16 and enc.info["n_train"] == 64
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == [".json", ".safetensors"]
    feats = enc.features(xh)
    assert feats.shape == (32, F.FEATURE_DIM) and np.isfinite(feats).all()

    again = F.load_or_train_encoder(x, y, xh, yh, cache_dir=tmp_path, epochs=3)
    assert again.info["from_cache"] is True and again.info["key"] == enc.info["key"]
    assert np.allclose(again.features(xh), feats, atol=1e-5)
    assert json.loads(next(tmp_path.glob("*.json")).read_text())["heldout_accuracy"] == enc.info["heldout_accuracy"]

    other = F.load_or_train_encoder(x[:-2], y[:-2], xh, yh, cache_dir=tmp_path, epochs=3)  # other data: new key
    assert other.info["from_cache"] is False and other.info["key"] != enc.info["key"]


def test_damaged_cache_is_retrained(tmp_path, capsys):
    x, y = two_class_images(16, seed=0)
    enc = F.load_or_train_encoder(x, y, x, y, cache_dir=tmp_path, epochs=1)
    next(tmp_path.glob("*.safetensors")).write_bytes(b"not a safetensors file")
    again = F.load_or_train_encoder(x, y, x, y, cache_dir=tmp_path, epochs=1)
    assert again.info["from_cache"] is False and "unusable" in capsys.readouterr().out
    assert again.info["key"] == enc.info["key"]


def test_encoder_fid_sees_a_class_shift():
    x, y = two_class_images(60, seed=0)
    xh, yh = two_class_images(60, seed=2)
    model = F.train_classifier(to_model_input(x), y, res=16, epochs=3, rotation_task=True)
    f_nc, f_nc2, f_ad = (F.extract_features(model, a) for a in (x[:60], xh[:60], xh[60:]))
    assert fid(f_nc, f_ad) > 5 * fid(f_nc, f_nc2)


def test_training_is_seeded():
    x, y = two_class_images(16, seed=0)
    a = F.train_classifier(to_model_input(x), y, res=16, epochs=1, seed=3)
    b = F.train_classifier(to_model_input(x), y, res=16, epochs=1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_inception_is_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, note = F.load_inception()
    assert model is None and "weights not in local cache" in note
    assert not any(tmp_path.rglob("*.pth"))


def test_inception_loads_from_the_local_cache(tmp_path, monkeypatch):
    from torchvision.models import inception_v3
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(),
               ckpt / "inception_v3_google-0cc3c7bd.pth")
    model, note = F.load_inception()
    assert model is not None and "inception_v3_google-0cc3c7bd.pth" in note
    feats = model(torch.zeros(2, 1, 16, 16))
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
