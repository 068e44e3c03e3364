"""The trainer on the smoke preset: learning, schedule, files, exact resume, divergence."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from brainlib.config import ConfigError, preset
from brainlib.data.dataset import SliceDataset
from brainlib.training.checkpoints import latest_checkpoint, load_checkpoint, load_generator
from brainlib.training.devices import autocast_dtype, use_channels_last
from brainlib.training.divergence import TrainingDiverged
from brainlib.training.legacy import upgrade_meta
from brainlib.training.metrics_log import read_metrics
from brainlib.training.schedule import ema_beta, epoch_permutation
from brainlib.training.trainer import Trainer, train


def _dataset(images: np.ndarray, labels=None) -> SliceDataset:
    n = len(images)
    labels = np.ones(n, np.int64) if labels is None else labels
    return SliceDataset(images=images, labels=labels, splits=np.array(["train"] * n),
                        sources=[f"img{i}" for i in range(n)], skipped=[], root=Path("memory"))


def _random(n=32, size=16, seed=0) -> SliceDataset:
    return _dataset(np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8))


def _batches(run_dir):
    return [r for r in read_metrics(run_dir) if r.get("kind") == "batch"]


def test_critic_learns_to_tell_easy_data_from_the_untrained_generator(tmp_path):
    images = np.zeros((64, 16, 16), np.uint8)
    images[:, 4:12, 4:12] = 255  # a white square: trivially unlike the generator's first outputs
    cfg = preset("smoke", run="easy", out_root=str(tmp_path), image_size=8, images_per_res=320)
    rows = _batches(train(cfg, dataset=_dataset(images)))
    assert len(rows) == 40
    first, last = rows[:8], rows[-8:]
    def mean(rs: list[dict], k: str) -> float:
        return sum(r[k] for r in rs) / len(rs)

    assert mean(last, "d_loss") < mean(first, "d_loss") - 1.0
    assert mean(last, "wdist") > mean(first, "wdist") + 0.3  # D(real) - D(fake) grows


def test_smoke_run_writes_the_run_folder_and_follows_the_schedule(tmp_path):
    cfg = preset("smoke", run="s", out_root=str(tmp_path))
    run = train(cfg, dataset=_random())
    def names(sub: str) -> list[str]:
        return sorted(p.name for p in (run / sub).iterdir())

    assert names("checkpoints") == ["01-8px.json", "01-8px.safetensors", "02-16px.json",
                                    "02-16px.safetensors", "latest.json"]
    assert names("samples") == ["01-8px.png", "02-16px.png"]
    assert names("plots") == ["loss_per_batch.png", "loss_per_epoch.png"]
    from PIL import Image
    assert Image.open(run / "samples" / "02-16px.png").size == (2 * 16 + 3 * 2,) * 2  # 2x2 grid, padding 2
    assert json.loads((run / "config.json").read_text())["run"] == "s"
    rows = _batches(run)
    assert [r["res"] for r in rows] == [8] * 4 + [16] * 4  # 32 images per step, batches of 8
    assert [r["images_seen"] for r in rows] == list(range(8, 72, 8))
    assert all(r["alpha"] == 1.0 for r in rows[:4])  # the first step does not fade
    assert [r["alpha"] for r in rows[4:]] == [0.0, 0.5, 1.0, 1.0]  # fade over the first half of step 2
    assert all(np.isfinite([r["d_loss"], r["g_loss"], r["gp"], r["img_per_sec"]]).all() for r in rows)
    G, cfg2, meta = load_generator("s", out_root=tmp_path)
    assert meta["finished"] and meta["res"] == 16 and meta["images_seen"] == 64 and cfg2 == cfg
    assert G(torch.randn(3, cfg.z_dim), res=16).shape == (3, 1, 16, 16)
    # a finished run resumes to nothing; a fresh run over it keeps the old folder aside
    assert train(cfg, resume=True, dataset=_random()) == run and len(_batches(run)) == 8
    train(cfg.replace(images_per_res=8), dataset=_random())
    assert len(_batches(run)) == 2 and len(list(tmp_path.glob("s.replaced-*/checkpoints/02-16px.safetensors"))) == 1


def test_epoch_permutation_and_ema_decay():
    assert torch.equal(epoch_permutation(0, 8, 1, 50), epoch_permutation(0, 8, 1, 50))
    assert not torch.equal(epoch_permutation(0, 8, 1, 50), epoch_permutation(0, 8, 2, 50))
    assert sorted(epoch_permutation(3, 16, 0, 50).tolist()) == list(range(50))
    assert ema_beta(1000, 1.0) == pytest.approx(0.5) and ema_beta(500, 1.0) == pytest.approx(0.5 ** 0.5)


def _all_tensors(run_dir):
    tensors, meta = load_checkpoint(latest_checkpoint(run_dir))
    return tensors, meta


def test_interrupted_and_resumed_run_ends_with_identical_weights(tmp_path):
    stop_at = 7  # step 2, mid-epoch (3 batches per epoch) and mid fade-in
    over = dict(style_mixing_prob=0.5, reg_every=2, images_per_res=40)  # mixing draws from the host RNG
    data = _random(n=28)  # 3 full batches per epoch: steps cross epoch boundaries
    full = train(preset("smoke", run="full", out_root=str(tmp_path), **over), dataset=data)
    cfg = preset("smoke", run="cut", out_root=str(tmp_path), **over)
    train(cfg, dataset=data, max_steps=stop_at)
    meta = json.loads(latest_checkpoint(cfg.run_dir).with_suffix(".json").read_text())
    assert meta["position"]["batches"] == stop_at and not meta["finished"]
    train(cfg, dataset=data, resume=True)
    a, meta_a = _all_tensors(full)
    b, meta_b = _all_tensors(cfg.run_dir)
    assert a.keys() == b.keys() and any(k.startswith("opt_D/state/") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    assert meta_b["finished"] and meta_b["images_seen"] == meta_a["images_seen"] == 80
    assert [r["d_loss"] for r in _batches(full)] == [r["d_loss"] for r in _batches(cfg.run_dir)]


def test_a_checkpoint_in_the_old_format_resumes_to_the_same_weights(tmp_path):
    """Format 1 metadata (the starting learning rates as "model_lrs", "optimizers", the removed
    settings in the config) is read through legacy.upgrade_meta and resumes bit-exactly."""
    data = _random(n=28)
    full = train(preset("smoke", run="full", out_root=str(tmp_path)), dataset=data)
    cfg = preset("smoke", run="old", out_root=str(tmp_path))
    train(cfg, dataset=data, max_steps=5)  # step 2, mid fade-in
    meta_path = latest_checkpoint(cfg.run_dir).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    networks, optimisers = meta.pop("networks"), meta.pop("optimisers")
    old = {**meta, "format_version": 1, "optimizers": optimisers,
           "model_lrs": {"lr": cfg.lr, "mapping_lr": cfg.mapping_lr},
           "config": {**meta["config"], "label_embed": True, "log_every": 1}}
    meta_path.write_text(json.dumps(old))
    assert upgrade_meta(old)["networks"] == networks
    train(cfg, dataset=data, resume=True)
    a, _ = _all_tensors(full)
    b, meta_b = _all_tensors(cfg.run_dir)
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    assert meta_b["finished"] and meta_b["format_version"] == 2 and "model_lrs" not in meta_b


def test_a_resume_with_new_learning_rates_keeps_the_mapping_networks_parameterisation(tmp_path):
    cfg = preset("smoke", run="lrs", out_root=str(tmp_path), lr=1e-3, mapping_lr=1e-4)
    train(cfg, dataset=_random(), max_steps=2)
    trainer = Trainer(cfg.replace(lr=5e-4, mapping_lr=2e-5), _random(), resume=True)
    started = 1e-4 / 1e-3
    assert trainer.network_settings.mapping_lr_mul == started
    assert all(layer.lr_mul == started for layer in [*trainer.G.mapping.layers, *trainer.G_ema.mapping.layers])
    groups = {g["name"]: g["lr"] for g in trainer.opt_G.param_groups}
    assert groups == {"synthesis": 5e-4, "mapping": 2e-5 / started}  # the mapping network learns at 2e-5


def test_resume_with_other_network_settings_is_refused_naming_them(tmp_path):
    cfg = preset("smoke", run="arch", out_root=str(tmp_path))
    train(cfg, dataset=_random(), max_steps=2)
    before = sorted(p.name for p in (cfg.run_dir / "checkpoints").iterdir())
    with pytest.raises(ConfigError, match=r"noise_max_res was None, now 8.*--set noise_max_res="):
        train(cfg.replace(noise_max_res=8), dataset=_random(), resume=True)
    assert sorted(p.name for p in (cfg.run_dir / "checkpoints").iterdir()) == before  # nothing touched
    train(cfg.replace(lr=5e-4), dataset=_random(), resume=True)  # a new learning rate is allowed
    assert load_generator("arch", out_root=tmp_path)[2]["finished"]


def test_nan_loss_stops_naming_the_batch_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import brainlib.networks.losses

    real_make_loss = brainlib.networks.losses.make_loss

    class PoisonedAt6:
        def __init__(self, cfg, device):
            self.inner, self.calls = real_make_loss(cfg, device), 0
            self.adaptive = self.inner.adaptive

        def critic_loss(self, *args, **kwargs):
            self.calls += 1
            loss, stats = self.inner.critic_loss(*args, **kwargs)
            return (loss * float("nan"), stats) if self.calls == 6 else (loss, stats)

        def generator_loss(self, *args, **kwargs):
            return self.inner.generator_loss(*args, **kwargs)

    monkeypatch.setattr(brainlib.networks.losses, "make_loss", PoisonedAt6)
    cfg = preset("smoke", run="nan", out_root=str(tmp_path))
    with pytest.raises(TrainingDiverged,
                       match=r"diverged at batch 6 \(resolution step 2, 16 px\): non-finite d_loss\b"):
        train(cfg, dataset=_random())
    good = cfg.run_dir / "checkpoints" / "01-8px.safetensors"
    assert latest_checkpoint(cfg.run_dir) == good
    tensors, meta = load_checkpoint(good)
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith(("G/", "D/")))
    # resume with a lower learning rate: allowed, applied and recorded
    monkeypatch.setattr(brainlib.networks.losses, "make_loss", real_make_loss)
    train(cfg.replace(lr=5e-4), dataset=_random(), resume=True)
    _, meta = load_checkpoint(latest_checkpoint(cfg.run_dir))
    assert meta["finished"] and meta["resumed_with"] == {"lr": {"was": 1e-3, "now": 5e-4}}
    assert meta["optimisers"]["opt_D"]["param_groups"][0]["lr"] == 5e-4
    events = [r for r in read_metrics(cfg.run_dir) if r.get("kind") == "resume"]
    assert events == [{"kind": "resume", "batch": 4, "changed": {"lr": {"was": 1e-3, "now": 5e-4}}}]
    assert [r["batch"] for r in _batches(cfg.run_dir)] == list(range(1, 9))  # the failed rows were dropped


def test_conditional_run_with_augmentation_and_mixing(tmp_path):
    labels = np.array([0, 1] * 16, np.int64)
    cfg = preset("smoke", run="both", out_root=str(tmp_path), class_name="both", augment="diffaugment",
                 style_mixing_prob=0.9, loss="logistic-r1")
    run = train(cfg, dataset=_dataset(_random().images, labels))
    rows = _batches(run)
    assert len(rows) == 8 and all("g_loss" in r for r in rows)
    tensors, meta = load_checkpoint(latest_checkpoint(run))
    assert tensors["sample/labels"].tolist() == [1, 1, 0, 0]  # grid rows: AD then NC


def test_periodic_checkpoints_are_pruned_but_end_of_step_ones_kept(tmp_path):
    cfg = preset("smoke", run="periodic", out_root=str(tmp_path), checkpoint_minutes=0.0)
    train(cfg, dataset=_random(), max_steps=7)
    names = sorted(p.name for p in (cfg.run_dir / "checkpoints").glob("*.safetensors"))
    assert names == ["01-8px.safetensors", "02-16px-000000056img.safetensors"]
    assert latest_checkpoint(cfg.run_dir).name == "02-16px-000000056img.safetensors"


def test_channels_last_follows_the_setting_else_the_device(tmp_path):
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert use_channels_last(True, cpu) and not use_channels_last(False, cuda) and use_channels_last(None, cuda)
    assert use_channels_last(None, cpu) and not use_channels_last(None, mps) and use_channels_last(True, mps)
    cfg = preset("smoke", run="layout", out_root=str(tmp_path))
    for setting, expected in ((True, True), (False, False), (None, True)):
        trainer = Trainer(cfg.replace(channels_last=setting), _random())
        weights = [p for p in trainer.D.parameters() if p.dim() == 4 and p.shape[-1] > 1]
        nhwc = all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
        assert trainer.channels_last is expected and nhwc is expected


def test_cpu_bf16_autocast_follows_the_setting_else_the_cpu_and_keeps_weights_float32(tmp_path, monkeypatch):
    cpu, cfg = torch.device("cpu"), preset("smoke", run="bf16", out_root=str(tmp_path))
    assert cfg.cpu_bf16 is None
    assert autocast_dtype(cfg.replace(cpu_bf16=True), cpu) is torch.bfloat16
    assert autocast_dtype(cfg.replace(cpu_bf16=False), cpu) is None
    with monkeypatch.context() as m:
        m.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
        assert autocast_dtype(cfg, cpu) is torch.bfloat16
        m.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True, "avx512_bf16": False})
        assert autocast_dtype(cfg, cpu) is torch.bfloat16
        m.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True})  # emulated bf16 would be slow
        assert autocast_dtype(cfg, cpu) is None
    for setting, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        trainer = Trainer(cfg.replace(cpu_bf16=setting), _random())
        seen: list[torch.dtype] = []
        trainer.D.register_forward_hook(lambda module, args, out, seen=seen: seen.append(out.dtype))
        before = [p.detach().clone() for p in trainer.G.parameters()]
        real = torch.rand(8, 1, 8, 8) * 2 - 1
        for regularise in (True, False):  # the R1 step runs D in float32 (losses.input_gradient)
            trainer.position.critic_steps = 0 if regularise else 1
            stats = trainer.train_step(real, None, 8, 1.0)
            assert all(torch.isfinite(v).all() for v in stats.values())
        assert dtype in seen and all(p.dtype == torch.float32 for p in trainer.G.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters(), strict=True))


def test_one_adam_group_for_the_synthesis_network_and_one_for_the_mapping_network(tmp_path):
    cfg = preset("smoke", run="groups", out_root=str(tmp_path), lr=2e-3, mapping_lr=2e-5)
    trainer = Trainer(cfg, _random())
    groups = {g["name"]: g for g in trainer.opt_G.param_groups}
    mapping = list(trainer.G.mapping.parameters())
    assert groups["mapping"]["params"] == mapping and groups["mapping"]["lr"] == 2e-3  # lr_mul scales it down
    assert groups["synthesis"]["params"] == [p for p in trainer.G.parameters() if all(p is not q for q in mapping)]
    assert groups["synthesis"]["lr"] == 2e-3 and [g["lr"] for g in trainer.opt_D.param_groups] == [2e-3]
