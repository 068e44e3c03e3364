"""The diffusion family on diffusion-smoke: the U-Net, the noise path and DDIM step against their
equations (and MONAI's schedulers), training, exact resume, generation, guidance, export."""
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainlib.cli import main
from brainlib.config import ConfigError, preset
from brainlib.data.dataset import load_dataset
from brainlib.eval.evaluate import evaluate, set_sampling_steps
from brainlib.eval.report import load_report
from brainlib.networks.diffusion import NoisePath, cosine_alphas_cumprod, guided, sampling_timesteps
from brainlib.networks.unet import NULL_CLASS, UNet
from brainlib.synthesis.diffusion_sampling import DiffusionSampler
from brainlib.synthesis.export import export_dataset
from brainlib.synthesis.sampling import load, sample_images
from brainlib.training.checkpoints import CheckpointError, latest_checkpoint, load_checkpoint, load_generator
from brainlib.training.metrics_log import read_metrics
from brainlib.training.trainer import train


def smoke(tmp_path, run: str, **overrides):
    return preset("diffusion-smoke", run=run, out_root=str(tmp_path), **overrides)


@pytest.fixture(scope="module")
def phantom_both(tiny_phantom, tiny_dataset_cache):
    return load_dataset(tiny_phantom, splits=["train"], image_size=16, cache_dir=tiny_dataset_cache, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_phantom, phantom_both) -> Path:
    """A conditional diffusion-smoke run trained to its end (4 batches) on the tiny phantom."""
    root = tmp_path_factory.mktemp("diffusion_runs")
    cfg = preset("diffusion-smoke", class_name="both", run="dsmoke-both", out_root=str(root),
                 data_root=str(tiny_phantom))
    train(cfg, dataset=phantom_both)
    return root


def batches(run_dir) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r.get("kind") == "batch"]


# ----------------------------------------------------------------------
# The network and the maths


@pytest.mark.parametrize("class_name", ["AD", "both"])
def test_unet_keeps_the_image_shape_and_starts_at_zero(class_name):
    for channels in ([8, 16], [8, 16, 32]):
        cfg = preset("diffusion-smoke", class_name=class_name, unet_channels=channels)
        net = UNet(cfg)
        x, t = torch.randn(3, 1, 16, 16), torch.tensor([0.0, 50.0, 99.0])
        label = torch.tensor([0, 1, NULL_CLASS]) if cfg.conditional else None
        out = net(x, t, label)
        assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))  # the output convolution starts at 0
        torch.nn.init.normal_(net.out[-1].weight)
        assert net(x, t, label).abs().sum() > 0
    with pytest.raises(ValueError, match="needs labels"):
        UNet(preset("diffusion-smoke", class_name="both"))(x, t)


def test_cosine_schedule_and_forward_noising_match_the_equation_and_monai():
    from monai.networks.schedulers import DDPMScheduler

    T = 1000
    torch.manual_seed(0)
    monai = DDPMScheduler(num_train_timesteps=T, schedule="cosine")
    abar = cosine_alphas_cumprod(T)
    assert torch.allclose(abar.float(), monai.alphas_cumprod, atol=1e-6)
    x0, eps = torch.rand(4, 1, 8, 8) * 2 - 1, torch.randn(4, 1, 8, 8)
    t = torch.tensor([0, 10, 500, 999])
    expected = abar[t].sqrt().float().view(-1, 1, 1, 1) * x0 + (1 - abar[t]).sqrt().float().view(-1, 1, 1, 1) * eps
    for objective in ("epsilon", "v"):
        path = NoisePath(objective, T)
        assert torch.allclose(path.noised(x0, eps, t), expected, atol=1e-6)
        assert torch.allclose(path.noised(x0, eps, t), monai.add_noise(x0, eps, t), atol=1e-5)
    assert torch.allclose(NoisePath("v", T).target(x0, eps, t), monai.get_velocity(x0, eps, t), atol=1e-5)
    flow = NoisePath("flow", T)
    u = ((t + 1) / T).view(-1, 1, 1, 1)
    assert torch.allclose(flow.noised(x0, eps, t), (1 - u) * x0 + u * eps, atol=1e-6)
    assert torch.allclose(flow.target(x0, eps, t), eps - x0)


@pytest.mark.parametrize("objective", ["epsilon", "v", "flow"])
def test_a_reverse_step_with_the_true_prediction_lands_on_the_forward_path(objective):
    path = NoisePath(objective, 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(3, 1, 8, 8, generator=g) * 1.8 - 0.9, torch.randn(3, 1, 8, 8, generator=g)
    # not t = 999 for epsilon: there a_t ~ 1e-4 and x0 = (x_t - s eps) / a amplifies float32 rounding
    t, t_prev = torch.tensor([950, 600, 300]), torch.tensor([899, 300, 0])
    x_t = path.noised(x0, eps, t)
    prediction = path.target(x0, eps, t)
    x0_hat, eps_hat = path.estimates(x_t, prediction, t)
    assert torch.allclose(x0_hat, x0, atol=2e-3) and torch.allclose(eps_hat, eps, atol=2e-3)
    assert torch.allclose(path.ddim_step(x_t, prediction, t, t_prev), path.noised(x0, eps, t_prev), atol=2e-3)
    assert torch.allclose(path.ddim_step(x_t, prediction, t, None), x0, atol=2e-3)


def test_ddim_step_is_the_deterministic_ddim_update_and_monais():
    from monai.networks.schedulers import DDIMScheduler

    T, steps = 1000, 10
    torch.manual_seed(0)
    abar = cosine_alphas_cumprod(T).float()
    x_t, out = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8) * 0.3
    t, t_prev = 700, 600  # MONAI steps from t to t - T // steps
    a, s, a_prev, s_prev = abar[t].sqrt(), (1 - abar[t]).sqrt(), abar[t_prev].sqrt(), (1 - abar[t_prev]).sqrt()
    x0_hat = ((x_t - s * out) / a).clamp(-1, 1)  # DDIM eq. 12 with sigma = 0, x0 clipped
    expected = a_prev * x0_hat + s_prev * out
    tt, tp = torch.tensor([t, t]), torch.tensor([t_prev, t_prev])
    assert torch.allclose(NoisePath("epsilon", T).ddim_step(x_t, out, tt, tp), expected, atol=1e-5)
    for objective, prediction_type in (("epsilon", "epsilon"), ("v", "v_prediction")):
        monai = DDIMScheduler(num_train_timesteps=T, schedule="cosine", prediction_type=prediction_type)
        monai.set_timesteps(steps)
        ours = NoisePath(objective, T).ddim_step(x_t, out, tt, tp)
        assert torch.allclose(ours, monai.step(out, t, x_t)[0], atol=1e-5), objective
    # the flow path's DDIM step is the Euler step of its ODE: x += (u_prev - u) * velocity
    flow = NoisePath("flow", T)
    euler = x_t + ((t_prev + 1) - (t + 1)) / T * out
    assert torch.allclose(flow.ddim_step(x_t, out, tt, tp, clip=False), euler, atol=1e-5)


def test_sampling_timesteps_and_guidance():
    assert sampling_timesteps(1000, 10) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert sampling_timesteps(100, 4) == [99, 74, 49, 24]
    assert sampling_timesteps(100, 100) == list(range(99, -1, -1))
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    assert guided(cond, uncond, 0.0) == 2.0 and guided(cond, uncond, 1.5) == 3.5


def test_diffusion_settings_are_validated():
    assert preset("diffusion-demo").diffusion and not preset("demo").diffusion
    bad = [({"family": "vae"}, "family 'vae'"), ({"objective": "x0"}, "objective 'x0'"),
           ({"unet_channels": [12, 16]}, "multiples of 8"), ({"unet_channels": [8, 8, 8, 8, 8, 8]}, "does not halve"),
           ({"sample_steps": 0}, "sample_steps=0"), ({"sample_steps": 101}, "sample_steps=101"),
           ({"guidance": -1.0}, "guidance=-1.0"), ({"class_dropout": 1.0}, "class_dropout=1.0")]
    for overrides, message in bad:
        with pytest.raises(ConfigError, match=message):
            preset("diffusion-smoke", **overrides)


# ----------------------------------------------------------------------
# Training


def test_training_writes_the_run_folder_with_finite_losses(trained):
    run = trained / "dsmoke-both"

    def names(sub: str) -> list[str]:
        return sorted(p.name for p in (run / sub).iterdir())

    assert names("checkpoints") == ["16px-000000032img-final.json", "16px-000000032img-final.safetensors",
                                    "latest.json"]
    assert names("samples") == ["16px-000000032img-final.png"] and names("plots") == ["loss_per_batch.png"]
    assert json.loads((run / "config.json").read_text())["family"] == "diffusion"
    rows = batches(run)
    assert [r["images_seen"] for r in rows] == [8, 16, 24, 32]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 and r["img_per_sec"] > 0 for r in rows)
    tensors, meta = load_checkpoint(latest_checkpoint(run))
    assert meta["finished"] and meta["family"] == "diffusion" and meta["images_seen"] == 32
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())
    assert not torch.equal(tensors["G/out.2.weight"], tensors["G_ema/out.2.weight"])  # the EMA lags
    assert train(preset("diffusion-smoke", class_name="both", run="dsmoke-both", out_root=str(trained)),
                 resume=True) == run and len(batches(run)) == 4  # a finished run resumes to nothing


def test_the_denoiser_learns_an_easy_dataset(tmp_path):
    images = np.zeros((32, 16, 16), np.uint8)
    images[:, 4:12, 4:12] = 255
    data = _memory_dataset(images)
    rows = batches(train(smoke(tmp_path, "easy", train_images=480, objective="epsilon", lr=3e-3), dataset=data))
    first, last = np.mean([r["loss"] for r in rows[:10]]), np.mean([r["loss"] for r in rows[-10:]])
    assert last < 0.6 * first


def _memory_dataset(images, labels=None):
    from brainlib.data.dataset import SliceDataset
    n = len(images)
    labels = np.ones(n, np.int64) if labels is None else labels
    return SliceDataset(images=images, labels=labels, splits=np.array(["train"] * n), sources=[""] * n,
                        skipped=[], root=Path("memory"))


def test_an_interrupted_and_resumed_run_ends_with_identical_weights(tmp_path, phantom_both):
    over = dict(class_name="both", train_images=48)  # 6 batches of 8 over 38 images: crosses an epoch
    full = train(smoke(tmp_path, "full", **over), dataset=phantom_both)
    cut = smoke(tmp_path, "cut", **over)
    train(cut, dataset=phantom_both, max_steps=2)
    assert not load_checkpoint(latest_checkpoint(cut.run_dir))[1]["finished"]
    train(cut, dataset=phantom_both, resume=True)
    a, b = load_checkpoint(latest_checkpoint(full))[0], load_checkpoint(latest_checkpoint(cut.run_dir))[0]
    assert a.keys() == b.keys() and any(k.startswith("opt_G/state/") for k in a) and "rng/noise" in a
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert [r["loss"] for r in batches(full)] == [r["loss"] for r in batches(cut.run_dir)]
    with pytest.raises(ConfigError, match="unet_channels was"):
        train(cut.replace(unet_channels=[8, 24]), dataset=phantom_both, resume=True)
    # a finished run trains longer when its budget grows, and keeps the checkpoint of the first budget
    train(cut.replace(train_images=64), dataset=phantom_both, resume=True)
    assert [r["images_seen"] for r in batches(cut.run_dir)] == list(range(8, 72, 8))
    finals = sorted(p.name for p in (cut.run_dir / "checkpoints").glob("*-final.safetensors"))
    assert finals == ["16px-000000048img-final.safetensors", "16px-000000064img-final.safetensors"]


def test_a_checkpoint_of_another_diffusion_architecture_is_refused(trained, tmp_path):
    import shutil
    run = tmp_path / "copy"
    shutil.copytree(trained / "dsmoke-both", run)
    meta_path = run / "checkpoints" / "16px-000000032img-final.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "architecture": "diffusion-0"}))
    with pytest.raises(CheckpointError, match="architecture diffusion-0.*builds architecture diffusion-1"):
        load(run)


def test_stylegan_tools_refuse_a_diffusion_run_by_name(trained):
    with pytest.raises(CheckpointError, match="holds a diffusion model, not a StyleGAN generator"):
        load_generator("dsmoke-both", out_root=trained)
    stylegan = preset("smoke", class_name="both", run="dsmoke-both", out_root=str(trained))
    with pytest.raises(ConfigError, match="family was 'diffusion', now 'stylegan'"):
        train(stylegan, resume=True)


# ----------------------------------------------------------------------
# Sampling, generate, export


def test_generate_twice_gives_the_same_bytes_and_seeds_differ(trained):
    for output, seed in (("a", 5), ("b", 5), ("c", 6)):
        assert main(["generate", "--model", "dsmoke-both", "--output", output, "--n", "3", "--seed", str(seed),
                     "--class", "NC", "--out-root", str(trained)]) == 0
    gen = trained / "dsmoke-both" / "generated_images"
    for i in range(3):
        assert (gen / "a" / f"img_{i}.png").read_bytes() == (gen / "b" / f"img_{i}.png").read_bytes()
    assert any((gen / "a" / f"img_{i}.png").read_bytes() != (gen / "c" / f"img_{i}.png").read_bytes() for i in range(3))
    record = json.loads((gen / "a.json").read_text())
    assert record["steps"] == 4 and record["guidance"] == 1.0 and record["size"] == 16
    assert main(["generate", "--model", "dsmoke-both", "--output", "d", "--n", "3", "--seed", "5", "--class", "NC",
                 "--steps", "2", "--guidance", "0", "--out-root", str(trained)]) == 0
    assert json.loads((gen / "d.json").read_text())["steps"] == 2
    assert any((gen / "a" / f"img_{i}.png").read_bytes() != (gen / "d" / f"img_{i}.png").read_bytes() for i in range(3))


def test_sample_images_serves_a_diffusion_run_image_by_image(trained):
    G, cfg, meta = load("dsmoke-both", out_root=trained)
    assert isinstance(G, DiffusionSampler) and meta["res"] == 16 and cfg.diffusion
    three = sample_images(G, 3, seed=2, class_name="AD", batch_size=2)
    assert three.shape == (3, 1, 16, 16) and three.min() >= -1 and three.max() <= 1
    third = sample_images(G, 1, seed=2, class_name="AD", start=2)
    assert torch.allclose(three[2], third[0], atol=1e-4)  # image i depends on (seed, i) alone
    with pytest.raises(ValueError, match="conditional: choose a class"):
        sample_images(G, 1)
    with pytest.raises(ValueError, match="truncation"):
        sample_images(G, 1, class_name="AD", psi=0.7)


def test_guidance_and_class_change_a_conditional_models_samples(trained):
    G = load("dsmoke-both", out_root=trained)[0]
    torch.manual_seed(0)
    with torch.no_grad():  # a denoiser whose class embedding matters, whatever 4 batches taught it
        for p in G.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    labels, seeds = torch.tensor([1, 1]), [3, 4]

    def sampler(w: float) -> DiffusionSampler:
        return DiffusionSampler(G.denoiser, G.cfg, guidance=w)

    plain = sampler(0.0).sample(labels, seeds)
    assert torch.equal(plain, sampler(0.0).sample(labels, seeds))
    assert not torch.allclose(plain, sampler(2.0).sample(labels, seeds), atol=1e-3)
    assert not torch.allclose(plain, sampler(0.0).sample(labels * 0, seeds), atol=1e-3)  # NC, not AD


def test_export_takes_a_diffusion_run(trained, tmp_path):
    out = export_dataset("dsmoke-both", tmp_path / "synthetic", 3, test_fraction=0.34, out_root=trained, progress=False)
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert sorted((r["class"], r["split"]) for r in rows) == sorted([("AD", "train")] * 2 + [("AD", "test")]
                                                                   + [("NC", "train")] * 2 + [("NC", "test")])
    sheet = (out / "DATASHEET.md").read_text()
    assert "A generative model (diffusion model, trained" in sheet and "4 DDIM steps, guidance 1" in sheet


def test_evaluate_samples_with_other_steps_beside_the_runs_own_report(trained, tmp_path):
    path = evaluate(["dsmoke-both"], n=8, out_root=trained, quick=True, progress=False, steps=2,
                    usefulness=False, embed_method=None, encoder_cache=tmp_path)
    assert path == trained / "dsmoke-both" / "eval-steps2.json" and (trained / "dsmoke-both" / "eval-steps2").is_dir()
    report = load_report(path)
    assert report["sample_steps"] == {"dsmoke-both": 2} and report["fingerprint"]["steps"] == 2
    assert set(report["per_class"]) == {"AD", "NC"} and not (trained / "dsmoke-both" / "eval.json").exists()
    stylegan = [("sg-AD", None, preset("smoke"), {})]
    with pytest.raises(ValueError, match="applies to diffusion runs; sg-AD is a StyleGAN"):
        set_sampling_steps(stylegan, 2)
    with pytest.raises(ValueError, match="can take 1 to 100 steps"):
        evaluate(["dsmoke-both"], n=8, out_root=trained, quick=True, progress=False, steps=101)


def test_the_steps_benchmark_gives_a_row_per_step_count_and_class(trained, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.diffusion_steps import main as steps_benchmark
    result = steps_benchmark(["--model", "dsmoke-both", "--out-root", str(trained), "--steps", "1", "3", "--n", "8",
                              "--quick", "--out", str(tmp_path / "steps.json")])
    assert [(r["steps"], r["class"]) for r in result["rows"]] == [(1, "AD"), (1, "NC"), (3, "AD"), (3, "NC")]
    row = result["rows"][0]
    assert row["sample_seconds"] >= 0 and all(math.isfinite(row[k]["generated"]) for k in ("swd_finest", "fid_encoder"))
    assert json.loads((tmp_path / "steps.json").read_text())["rows"] == result["rows"]
    assert (trained / "dsmoke-both" / "eval-steps3.json").is_file()


def test_two_processes_under_torchrun_train_as_one_with_their_global_batch(tiny_phantom, tmp_path):
    """Every rank takes its shard of the same draws and DDP averages the gradients: the weights
    match a one-process run's up to float rounding."""
    import os
    import subprocess
    import sys
    over = ["max_images=16", "train_images=32", "cpu_bf16=false", "class_name=both"]
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "brainlib", "train", "--preset",
           "diffusion-smoke", "--class", "both", "--data", str(tiny_phantom), "--out-root", str(tmp_path / "ddp")]
    cmd += [a for o in over for a in ("--set", o)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training diffusion-smoke-both:") == 1 and "x 2 processes" in done.stdout
    one = train(preset("diffusion-smoke", run="one", out_root=str(tmp_path), data_root=str(tiny_phantom),
                       max_images=16, train_images=32, cpu_bf16=False, class_name="both"))
    a, meta = load_checkpoint(latest_checkpoint(tmp_path / "ddp" / "diffusion-smoke-both"))
    b = load_checkpoint(latest_checkpoint(one))[0]
    assert meta["world_size"] == 2 and meta["images_seen"] == 32 and len(batches(one)) == 4
    diffs = {k: (a[k] - b[k]).abs().max().item() for k in a if k.startswith("G_ema/")}
    assert max(diffs.values()) < 1e-4, sorted(diffs.items(), key=lambda kv: -kv[1])[:3]


def test_the_speed_benchmark_runs_quick_and_writes_its_json(tmp_path):
    import os
    import subprocess
    import sys
    root = Path(__file__).parents[1]
    env = {**os.environ, "BRAINLIB_BENCH_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "diffusion_speed.py"), "--quick"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "quick" / "diffusion_speed.json").read_text())
    rows = report["rows"]
    train_rows = [r for r in rows if r["what"] == "train"]
    assert [(r["preset"], r["res"]) for r in train_rows] == [("smoke", 8), ("smoke", 16), ("diffusion-smoke", 16)]
    sampled = [(r["steps"], r["guidance"]) for r in rows if r["what"] == "sample"]
    assert sampled == [(2, 0.0), (4, 0.0), (2, 1.0), (4, 1.0)]
    budget = next(r for r in rows if r["what"] == "budget")
    assert all(math.isfinite(r["img_per_s"]) and r["img_per_s"] > 0 for r in rows if "img_per_s" in r)
    assert budget["stylegan_run_seconds"] > 0 and budget["diffusion_images_in_stylegan_time"] > 0
    assert "diffusion_images_with_1000_samples" in budget  # 0 if sampling 1,000 takes longer
