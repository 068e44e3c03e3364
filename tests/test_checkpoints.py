"""Checkpoints: exact round trips, refusals with reasons, atomic saves that survive a full disk,
and the metadata older versions wrote."""
import dataclasses
import errno
import json

import pytest
import torch

from brainlib.cli import main
from brainlib.config import ConfigError, preset
from brainlib.networks.settings import NetworkSettings, network_settings
from brainlib.networks.stylegan1 import Discriminator, Generator
from brainlib.training import checkpoints as ckpt
from brainlib.training.checkpoints import CheckpointError, load_checkpoint, load_generator, save_checkpoint
from brainlib.training.legacy import upgrade_meta


def _tensors(cfg):
    torch.manual_seed(0)
    G, D = Generator(network_settings(cfg)), Discriminator(network_settings(cfg))
    opt = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.0, 0.99))
    G(torch.randn(4, cfg.z_dim), res=8).square().mean().backward()
    opt.step()
    opt_t, opt_meta = ckpt.optimiser_tensors(opt, "opt_G")
    tensors = {**ckpt.module_tensors(G, "G"), **ckpt.module_tensors(D, "D"), **ckpt.module_tensors(G, "G_ema"),
               **opt_t, "rng/torch_cpu": torch.get_rng_state()}
    meta = {"config": cfg.to_dict(), "res": 8, "alpha": 1.0, "images_seen": 4, "finished": True,
            "optimisers": {"opt_G": opt_meta}}
    return G, opt, tensors, meta


@pytest.fixture
def saved(tmp_path):
    cfg = preset("smoke", run="r", out_root=str(tmp_path))
    G, opt, tensors, meta = _tensors(cfg)
    path = save_checkpoint(cfg.run_dir, "01-8px", tensors, meta)
    return cfg, G, opt, tensors, path


def test_round_trip_gives_every_tensor_back_exactly(saved):
    cfg, G, opt, tensors, path = saved
    assert path == cfg.run_dir / "checkpoints" / "01-8px.safetensors"
    assert json.loads((path.parent / "latest.json").read_text()) == {"checkpoint": "01-8px.safetensors"}
    loaded, meta = load_checkpoint(path)
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert meta["format_version"] == ckpt.FORMAT_VERSION and meta["images_seen"] == 4
    # optimiser state comes back into a fresh optimiser
    G2 = Generator(network_settings(cfg))
    ckpt.load_module(G2, loaded, "G", path)
    opt2 = torch.optim.Adam(G2.parameters(), lr=1e-3, betas=(0.0, 0.99))
    ckpt.load_optimiser(opt2, loaded, meta["optimisers"]["opt_G"], "opt_G")
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys() and len(s1) > 0
    assert all(torch.equal(s1[i][k], s2[i][k]) for i in s1 for k in ("step", "exp_avg", "exp_avg_sq"))
    assert opt2.param_groups[0]["betas"] == (0.0, 0.99)


@pytest.mark.parametrize("how", ["name", "folder", "file"])
def test_load_generator_resolves_run_name_folder_and_file(saved, how):
    cfg, G, _, _, path = saved
    model = {"name": cfg.run, "folder": cfg.run_dir, "file": path}[how]
    G2, cfg2, meta = load_generator(model, out_root=cfg.out_root)
    assert cfg2 == cfg and not G2.training and meta["res"] == 8 and meta["finished"] is True
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values(), strict=True))
    with pytest.raises(FileNotFoundError, match="no run or checkpoint named 'nope'"):
        load_generator("nope", out_root=cfg.out_root)


def test_weights_only_pt_file_loads_and_a_pickle_is_refused(saved, tmp_path):
    cfg, G, _, _, path = saved
    pt = tmp_path / "g.pt"
    torch.save(G.state_dict(), pt)
    (tmp_path / "g.json").write_text(json.dumps({"config": cfg.to_dict()}))
    G2, _, _ = load_generator(pt)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values(), strict=True))
    evil = tmp_path / "evil.pt"
    torch.save({"x": object()}, evil)
    with pytest.raises(CheckpointError, match="evil.pt could not be read as a weights-only"):
        load_checkpoint(evil)


def test_mismatched_architecture_is_refused_with_the_differences(saved):
    cfg, _, _, tensors, path = saved
    wider = Generator(network_settings(cfg.replace(channels={4: 16, 8: 32, 16: 8})))
    with pytest.raises(CheckpointError) as e:
        ckpt.load_module(wider, tensors, "G", path)
    msg = str(e.value)
    assert "01-8px.safetensors does not fit this G architecture" in msg
    assert "shape of blocks.8.conv0.conv.weight: checkpoint [16, 16, 3, 3], model [32, 16, 3, 3]" in msg
    bigger = Generator(network_settings(cfg.replace(image_size=32, channels={4: 16, 8: 16, 16: 8, 32: 8})))
    with pytest.raises(CheckpointError, match="missing in checkpoint: blocks.32"):
        ckpt.load_module(bigger, tensors, "G", path)


def test_a_checkpoint_of_an_older_architecture_is_refused_and_kept(saved):
    from brainlib.networks.stylegan1 import ARCHITECTURE
    from brainlib.training.trainer import Trainer
    cfg, _, _, tensors, path = saved
    meta = load_checkpoint(path)[1]
    assert meta["architecture"] == ARCHITECTURE  # recorded on save
    old = save_checkpoint(cfg.run_dir, "02-8px", tensors, {**meta, "architecture": 1})
    before = old.read_bytes()
    with pytest.raises(CheckpointError, match=f"02-8px.safetensors was written for architecture 1 and this "
                                              f"brainlib builds architecture {ARCHITECTURE}"):
        load_generator(cfg.run, out_root=cfg.out_root)
    with pytest.raises(CheckpointError, match="was written for architecture 1"):
        Trainer(cfg, dataset=None, resume=True)  # refused before the data is touched
    assert old.read_bytes() == before and ckpt.latest_checkpoint(cfg.run_dir) == old


def test_format_1_metadata_takes_the_mapping_multiplier_from_the_rates_the_run_started_with():
    cfg = preset("smoke", lr=5e-4, mapping_lr=1e-4)  # as saved after a resume that lowered lr
    old = {"format_version": 1, "config": {**cfg.to_dict(), "label_embed": True},
           "model_lrs": {"lr": 1e-3, "mapping_lr": 1e-4}, "optimizers": {"opt_G": {"scalars": {}}}}
    new = upgrade_meta(old)
    assert NetworkSettings.from_dict(new["networks"]) == dataclasses.replace(network_settings(cfg), mapping_lr_mul=0.1)
    assert new["optimisers"] == {"opt_G": {"scalars": {}}} and "model_lrs" not in new and "optimizers" not in new
    assert upgrade_meta(new) == new and "model_lrs" in old  # current metadata passes; the input is kept
    # before model_lrs, the config's own rates
    assert upgrade_meta({"config": cfg.to_dict()})["networks"]["mapping_lr_mul"] == 1e-4 / 5e-4
    with pytest.raises(ConfigError, match="setting label_embed=False was removed"):
        upgrade_meta({"config": {**cfg.to_dict(), "label_embed": False}})


def test_load_generator_builds_the_multiplier_the_checkpoint_records(saved):
    cfg, G, *_ = saved
    path = save_checkpoint(cfg.run_dir, "02-8px", ckpt.module_tensors(G, "G_ema"),
                           {"config": cfg.replace(lr=5e-4).to_dict(), "networks": network_settings(cfg).to_dict()})
    G2 = load_generator(path)[0]
    assert all(layer.lr_mul == cfg.mapping_lr / cfg.lr for layer in G2.mapping.layers)
    z = torch.randn(2, cfg.z_dim)
    torch.testing.assert_close(G2.map(z), G.map(z), rtol=0, atol=0)


def test_corrupt_or_tampered_files_give_an_error_naming_the_file(saved):
    *_, path = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"01-8px.safetensors is corrupt or was modified"):
        load_checkpoint(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta.pop("sha256")
    path.with_suffix(".json").write_text(json.dumps(meta))
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match=r"01-8px.safetensors is not a readable safetensors file"):
        load_checkpoint(path)
    path.with_suffix(".json").write_text("{truncated")
    with pytest.raises(CheckpointError, match=r"01-8px.json is not valid JSON"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, says", [
    ("null", "must hold a JSON object {...}, not null"), ("[1]", "not [1]"), ("3", "not 3"),
    ('"01-8px.safetensors"', 'not "01-8px.safetensors"'), ("{broken", "is not valid JSON"),
    ('{"checkpoint": 5}', 'got "checkpoint": 5'), ('{"checkpoint": "../../etc/x"}', "in its folder"),
])
def test_latest_json_of_any_shape_is_a_one_line_error(saved, capsys, content, says):
    cfg, *_ = saved
    (cfg.run_dir / "checkpoints" / "latest.json").write_text(content)
    with pytest.raises(CheckpointError, match="latest.json") as e:
        ckpt.latest_checkpoint(cfg.run_dir)
    assert says in str(e.value) and "\n" not in str(e.value)
    args = ["--out-root", str(cfg.out_root)]
    assert main(["generate", "--model", "r", "--output", "x", "--n", "1", *args]) == 2
    assert main(["train", "--preset", "smoke", "--run", "r", "--resume", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(says in line for line in err)


def test_a_full_disk_keeps_the_previous_checkpoint(saved, monkeypatch):
    cfg, _, _, tensors, old = saved
    import brainlib.atomic

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(brainlib.atomic.os, "fsync", disk_full)
    with pytest.raises(CheckpointError) as e:
        save_checkpoint(cfg.run_dir, "02-16px", tensors, {"res": 16})
    assert "could not write checkpoint" in str(e.value) and "02-16px.safetensors" in str(e.value)
    assert "the disk is full" in str(e.value) and f"previous checkpoint {old} is intact" in str(e.value)
    monkeypatch.undo()
    assert ckpt.latest_checkpoint(cfg.run_dir) == old
    assert sorted(p.name for p in old.parent.iterdir()) == ["01-8px.json", "01-8px.safetensors", "latest.json"]
    loaded, _ = load_checkpoint(old)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_adam_state_saved_in_one_grouping_loads_into_another():
    """Older checkpoints held one Adam group per synthesis block; they resume into one synthesis group."""
    params = [torch.nn.Parameter(torch.randn(3)) for _ in range(4)]
    before = torch.optim.Adam([{"params": params[:1]}, {"params": params[1:3]}, {"params": params[3:]}], lr=0.1)
    sum(p.square().sum() for p in params).backward()
    before.step()
    tensors, extra = ckpt.optimiser_tensors(before, "opt")
    after = torch.optim.Adam([{"params": params[:3]}, {"params": params[3:]}], lr=0.1)
    ckpt.load_optimiser(after, tensors, extra, "opt")
    assert len(after.param_groups) == 2
    for p in params:
        assert torch.equal(after.state[p]["exp_avg"], before.state[p]["exp_avg"])
    fewer = torch.optim.Adam([{"params": params[:2]}], lr=0.1)
    with pytest.raises(ValueError, match="opt: the checkpoint's optimiser holds 4 parameters, this model 2"):
        ckpt.load_optimiser(fewer, tensors, extra, "opt")
