"""C2ST: chance for one distribution split in two, near 1 for an obvious difference."""
import pytest
import torch

from brainlib.eval.c2st import c2st, c2st_accuracy, half_resolution


def _blobs(n: int, seed: int, radius: float) -> torch.Tensor:
    """Bright discs of a given radius with noise: a stand-in for brain slices."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    disc = ((xx**2 + yy**2) < radius**2).float() * 1.6 - 0.8
    return (disc + 0.3 * torch.randn(n, 1, 32, 32, generator=g)).clamp(-1, 1)


def test_same_distribution_is_near_chance():
    acc = c2st_accuracy(_blobs(200, 0, 0.6), _blobs(200, 1, 0.6), seed=0, epochs=4)
    assert 0.35 <= acc <= 0.65


def test_obvious_difference_is_detected():
    acc = c2st_accuracy(_blobs(200, 0, 0.6), _blobs(200, 1, 0.3), seed=0, epochs=4)
    assert acc >= 0.95


def test_report_has_floor_and_takes_uint8():
    real_train = ((_blobs(120, 2, 0.6) + 1) * 127.5).round().to(torch.uint8).squeeze(1)
    report = c2st(_blobs(120, 3, 0.3), real_train, _blobs(120, 4, 0.6), seeds=(0, 1), epochs=3)
    assert report["c2st"] > report["c2st_floor"] + 0.2
    assert report["c2st_n"] == 120 and report["c2st_seeds"] == 2


def test_too_few_images_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 8 images"):
        c2st_accuracy(_blobs(4, 0, 0.5), _blobs(20, 0, 0.5))


def test_small_samples_are_scored_with_the_statistics_they_were_trained_on():
    # 120 a side at 64 px is 16 optimisation steps: BatchNorm's running statistics were still
    # near their initial values when scoring, and sets that differ only in the grain of their
    # noise read 0.5 for every seed (now 1.0)
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    disc = ((xx**2 + yy**2) < 0.36).float() * 1.6 - 0.8
    fine = (disc + 0.3 * torch.randn(120, 1, 64, 64, generator=g)).clamp(-1, 1)
    coarse = disc + 0.9 * torch.nn.functional.avg_pool2d(torch.randn(120, 1, 64, 64, generator=g), 5, 1, 2)
    assert min(c2st_accuracy(coarse.clamp(-1, 1), fine, seed=s) for s in range(2)) >= 0.9


def test_half_resolution_hides_pixel_texture_but_keeps_anatomy():
    """Sets that differ only in the grain of their noise are told apart at full size and not
    at half size; sets whose discs differ in size are told apart at both."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, generator=g)
    torch.testing.assert_close(half_resolution(x)[0, 0, 0, 0], x[0, 0, :2, :2].mean())
    assert half_resolution(x).shape == (2, 1, 4, 4)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    disc = ((xx**2 + yy**2) < 0.36).float() * 1.2 - 0.6
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1) * 0.3
    smooth = disc + 0.05 * torch.randn(200, 1, 32, 32, generator=g)
    textured = disc + checker + 0.05 * torch.randn(200, 1, 32, 32, generator=g)
    assert c2st_accuracy(textured, smooth, seed=0, epochs=4) >= 0.95
    assert c2st_accuracy(half_resolution(textured), half_resolution(smooth), seed=0, epochs=4) <= 0.7
    assert c2st_accuracy(half_resolution(_blobs(200, 0, 0.6)), half_resolution(_blobs(200, 1, 0.3)),
                         seed=0, epochs=4) >= 0.95
