"""The benchmark scripts run end to end in --quick mode and write well-formed JSON; the
fast paths they measure equal their plain twins. No timing is asserted (speed varies with
the machine's load): only that every figure is there, finite and positive."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from brainlib.networks.layers import AdaIN, ConvDown2d, MinibatchStdDev, UpConv2d, centred_and_variance
from brainlib.training.devices import cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def run_all(tiny_phantom, tmp_path_factory):
    """benchmarks/run_all.py --quick on the tiny phantom, every JSON into a temporary folder."""
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "BRAINLIB_BENCH_DIR": str(out)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--data",
                           str(tiny_phantom)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(out.glob("*.json"))  # quick results never replace a full run's
    return out / "quick", done.stdout


def test_run_all_writes_every_benchmarks_json(run_all):
    out, _ = run_all
    names = {p.stem for p in out.glob("*.json")}
    assert {"run_all", "data_speed", "generation_speed", "scaling"} <= names
    for name in ("run_all", "data_speed", "generation_speed", "scaling"):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["benchmark"] == name
        assert report["machine"]["torch"] == torch.__version__
        assert report["machine"]["threads"] >= 1
        assert positive(report["peak_rss_mb"])


def test_training_rows_compare_brainlib_with_the_baseline(run_all):
    report = json.loads((run_all[0] / "run_all.json").read_text())
    rows = report["training"]
    assert [(r["preset"], r["res"]) for r in rows] == [("smoke", 8), ("smoke", 16)]
    for r in rows:
        assert r["reg_every"] == 4
        assert r["default_precision"] == ("bfloat16" if cpu_has_bf16() else "float32")
        assert set(r["seconds_median"]) == {"baseline", "ours_reg", "ours_noreg", "bf16_reg", "bf16_noreg"}
        for key in ("baseline_img_s", "ours_img_s", "ours_bf16_img_s", "ratio", "bf16_ratio"):
            assert positive(r[key]), key
        # img/s of the lazy schedule: one step in four pays the penalty
        s = r["seconds_median"]
        expected = r["batch"] / ((s["ours_reg"] + 3 * s["ours_noreg"]) / 4)
        assert r["ours_img_s"] == pytest.approx(expected, rel=0.02)
        assert r["ratio"] == pytest.approx(r["ours_img_s"] / r["baseline_img_s"], rel=0.02)


def test_combined_table_has_every_benchmark(run_all):
    out, stdout = run_all
    report = json.loads((out / "run_all.json").read_text())
    kinds = [r["benchmark"] for r in report["rows"]]
    for kind in ("train step", "data epoch", "generate", "explorer render", "DDP 2 proc", "H100 ESTIMATE"):
        assert kind in kinds
        assert kind in stdout  # the printed table
    for r in report["rows"]:
        assert positive(r["brainlib"]), r
        if r.get("ratio") is not None:
            assert positive(r["ratio"]) and positive(r["baseline"]), r


def test_data_scaling_ddp_and_estimate_sections(run_all):
    out, _ = run_all
    data = json.loads((out / "data_speed.json").read_text())
    assert data["images"] == 38  # the tiny phantom's train split (80% of 48), under the 64 limit
    assert all(positive(r["cached_epoch_s"]) and positive(r["decode_w0_epoch_s"]) for r in data["rows"])
    scaling = json.loads((out / "scaling.json").read_text())
    assert [r["factor"] for r in scaling["epoch_scaling"]] == [1, 2, 4]
    n = scaling["epoch_scaling"][0]["images"]
    assert [r["images"] for r in scaling["epoch_scaling"]] == [n, 2 * n, 4 * n]
    assert [r["processes"] for r in scaling["ddp"]] == [1, 2]
    assert all(r["world"] == r["processes"] for r in scaling["ddp"])
    est = scaling["h100_estimate"]
    assert est["ESTIMATE"] is True and est["assumptions"]["sustained_fraction"] > 0
    assert [r["res"] for r in est["rows"]] == [8, 16]
    # FLOPs per image grow with resolution (4x the pixels at the top block)
    assert est["rows"][1]["gflop_per_image"] > est["rows"][0]["gflop_per_image"] > 0
    gen = json.loads((out / "generation_speed.json").read_text())
    assert gen["generation"][0]["n"] == 8 and positive(gen["generation"][0]["ratio"])
    assert [r["res"] for r in gen["explorer"]] == [16] and positive(gen["explorer"][0]["median_ms"])


def _double_backward(layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's output, its input gradient (with a graph) and the gradient of that gradient:
    the gradient penalty differentiates D twice, so fast paths must agree to second order."""
    y = layer(x)
    g = torch.autograd.grad(y.square().sum(), x, create_graph=True)[0]
    return y, g, torch.autograd.grad(g.square().sum(), x)[0]


RING = UpConv2d.RING_MIN_CHANNELS, UpConv2d.RING_MIN_SIZE  # where UpConv2d takes its border-ring form


@pytest.mark.parametrize("make, shape", [
    (lambda fast: ConvDown2d(5, 7, fast=fast).double(), (8, 5, 12, 10)),
    (lambda fast: UpConv2d(5, 7, fast=fast).double(), (8, 5, 12, 10)),
    (lambda fast: UpConv2d(RING[0], 3, fast=fast).double(), (2, RING[0], RING[1] + 2, RING[1])),
    (lambda fast: MinibatchStdDev(4, fast=fast), (8, 5, 12, 10)),
], ids=["conv_down", "up_conv", "up_conv_ring", "minibatch_std"])
def test_fast_layers_equal_their_plain_twins_to_second_order(make, shape):
    torch.manual_seed(0)
    fused, plain = make(True), make(False)
    with torch.no_grad():
        for p in fused.parameters():
            if p.ndim == 1:
                p.normal_()  # a non-zero bias, so that path is compared too
    plain.load_state_dict(fused.state_dict())
    assert fused.fast and not plain.fast
    # a non-square map in channels_last, as the trainer feeds them, and a float64 copy for exactness
    x = (torch.randn(shape) * 3 + 1).contiguous(memory_format=torch.channels_last)
    dtype = torch.float32 if isinstance(fused, MinibatchStdDev) else torch.float64  # mbstd works in float32
    x = x.to(dtype).requires_grad_(True)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else {}
    for a, b in zip(_double_backward(fused, x), _double_backward(plain, x), strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_fast_adain_equals_instance_norm():
    torch.manual_seed(0)
    fused, plain = AdaIN(6, 16), AdaIN(6, 16, fast=False)
    plain.load_state_dict(fused.state_dict())
    x = (torch.randn(4, 6, 9, 9) * 5 + 3).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = torch.randn(4, 16)
    y_fused, y_plain = fused(x, w), plain(x, w)
    torch.testing.assert_close(y_fused, y_plain, rtol=1e-4, atol=1e-5)
    g_fused, g_plain = (torch.autograd.grad(y.square().sum(), x)[0] for y in (y_fused, y_plain))
    torch.testing.assert_close(g_fused, g_plain, rtol=1e-4, atol=1e-4)
    # each instance and channel of the normalised map has mean 0 and variance 1 before the style
    centred, var = centred_and_variance(x.detach(), dim=(2, 3))
    torch.testing.assert_close(var, x.detach().var(dim=(2, 3), keepdim=True, unbiased=False))


def test_baseline_loader_and_step(tiny_phantom):
    sys.path.insert(0, str(ROOT))
    from benchmarks.baseline import BaselineTrainer, folder_loader
    from brainlib.config import preset
    loader = folder_loader(tiny_phantom / "train", 16, 8, limit=16)
    batches = list(loader)
    assert len(batches) == 2  # 16 images, batch 8, a re-decoded epoch each time it is iterated
    images, _ = batches[0]
    assert images.shape == (8, 1, 16, 16) and images.dtype == torch.float32
    assert -1.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.1
    trainer = BaselineTrainer(preset("smoke"))
    twins = [m for m in [*trainer.G.modules(), *trainer.D.modules()] if hasattr(m, "fast")]
    kinds = {type(m) for m in twins}
    assert kinds == {AdaIN, ConvDown2d, MinibatchStdDev, UpConv2d} and not any(m.fast for m in twins)
    before = trainer.D.epilogue.out.weight.detach().clone()
    stats = trainer.train_step(images, 16, 0.5)
    assert set(stats) == {"d_loss", "g_loss", "gp"} and all(math.isfinite(v) for v in stats.values())
    assert stats["gp"] > 0
    assert not torch.equal(before, trainer.D.epilogue.out.weight)


def test_design_speed_times_each_design_and_scales_the_schedule_to_equal_time(tmp_path):
    from benchmarks.design_speed import main, parse_design
    assert parse_design("sg2:arch=stylegan2,start_res=16") == ("sg2", {"arch": "stylegan2", "start_res": "16"})
    assert parse_design("v1:") == ("v1", {})
    wide = parse_design('wide:channels={"32":64,"64":32},lowpass_from=32')
    assert wide == ("wide", {"channels": '{"32":64,"64":32}', "lowpass_from": "32"})
    rows = main(["--preset", "smoke", "--rounds", "1", "--warmup", "0", "--out", str(tmp_path / "d.json"),
                 "--design", "v1:", "--design", "direct:arch=stylegan2,start_res=16"])
    assert [r["design"] for r in rows] == ["v1", "direct"]
    assert set(rows[0]["ms_per_step"]) == {8, 16} and set(rows[1]["ms_per_step"]) == {16}
    assert rows[0]["time_ratio"] == 1.0 and rows[0]["equal_time_images"] == 32  # the smoke schedule's
    assert all(positive(r["schedule_seconds"]) and positive(r["time_ratio"]) for r in rows)
    direct = rows[1]
    assert direct["equal_time_images"] == int(32 / direct["time_ratio"])
    assert json.loads((tmp_path / "d.json").read_text())["rows"][1]["design"] == "direct"


def test_nifti_speed_reports_every_figure_for_each_volume(tmp_path):
    from benchmarks.nifti_speed import main
    result = main(["--quick", "--axes", "0", "2", "--out", str(tmp_path / "n.json")])
    assert [(r["shape"], r["axis"]) for r in result["rows"]] == [("64x64x64", 0), ("64x64x64", 2),
                                                                ("96x96x48", 0), ("96x96x48", 2)]
    for r in result["rows"]:
        assert r["slices"] > 0
        assert all(positive(r[k]) for k in ("load_s", "slice_s", "decode_s", "slices_per_s", "decode_over_load"))
    assert json.loads((tmp_path / "n.json").read_text())["benchmark"] == "nifti_speed"
