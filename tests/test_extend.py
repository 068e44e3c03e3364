"""Training a StyleGAN run longer at full resolution (`final_images`): the schedule, a finished
run extended with `--resume --set final_images=N` keeping what it finished with, and the errors."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from brainlib.batch.report_page import run_blocks
from brainlib.config import ConfigError, preset
from brainlib.data.dataset import SliceDataset
from brainlib.rundir import RunDir
from brainlib.training.checkpoints import latest_checkpoint, load_checkpoint
from brainlib.training.metrics_log import read_metrics
from brainlib.training.schedule import Position, fade_progress, schedule, step_spent
from brainlib.training.trainer import train


def _random(n=32, size=16) -> SliceDataset:
    images = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    return SliceDataset(images=images, labels=np.ones(n, np.int64), splits=np.array(["train"] * n),
                        sources=[f"img{i}" for i in range(n)], skipped=[], root=None)


def _batches(run_dir):
    return [r for r in read_metrics(run_dir) if r.get("kind") == "batch"]


def test_final_images_lengthen_the_last_step_but_not_its_fade():
    cfg = preset("smoke", images_per_res=40, fade_fraction=0.5, final_images=60)
    rows = schedule(cfg, 32)
    assert [r["images"] for r in rows] == [40, 100] and [r["fade_images"] for r in rows] == [0, 20.0]
    p = Position(step_index=1, images_in_step=20)
    assert step_spent(cfg, p, 16, 32) == (20, 100)
    assert fade_progress(cfg, p, 16, 32) == 0.5  # alpha is 1 here, as without final_images
    assert step_spent(cfg, Position(images_in_step=20), 8, 32) == (20, 40)  # earlier steps unchanged


def test_bad_values_are_refused():
    with pytest.raises(ConfigError, match="final_images=-1 must be a whole number"):
        preset("smoke", final_images=-1)
    with pytest.raises(ConfigError, match="needs an image budget"):
        preset("smoke", final_images=16, seconds_per_res={8: 1.0, 16: 1.0})


def test_a_finished_run_trains_longer_and_keeps_the_checkpoint_it_finished_with(tmp_path):
    data = _random()
    cfg = preset("smoke", run="ext", out_root=str(tmp_path), images_per_res=16)
    run = train(cfg, dataset=data)
    first = latest_checkpoint(run)
    assert first.name == "02-16px.safetensors"
    before = load_file(first)
    seen = load_checkpoint(first)[1]["images_seen"]

    extended = cfg.replace(final_images=40)
    train(extended, dataset=data, resume=True)
    last = latest_checkpoint(run)
    tensors, meta = load_checkpoint(last)
    batch = cfg.batch_sizes[16]
    assert meta["finished"] and meta["images_seen"] == seen + 40  # 40 = 5 whole batches of 8
    assert last.name == f"02-16px-{seen + 40:09d}img-final.safetensors"
    assert torch.equal(load_file(first)["G/blocks.16.conv1.conv.weight"], before["G/blocks.16.conv1.conv.weight"])
    assert not torch.equal(tensors["G/blocks.16.conv1.conv.weight"], before["G/blocks.16.conv1.conv.weight"])
    assert (run / "samples" / "02-16px.png").is_file() and (run / "samples" / f"{last.stem}.png").is_file()
    rows = [r for r in _batches(run) if r["images_seen"] > seen]
    assert len(rows) == 40 // batch and all(r["res"] == 16 and r["alpha"] == 1.0 for r in rows)

    train(extended, dataset=data, resume=True)  # finished at this budget: nothing to do
    assert latest_checkpoint(run) == last and load_checkpoint(last)[1]["images_seen"] == seen + 40
    train(cfg.replace(final_images=64), dataset=data, resume=True)  # and once more, from the extension
    assert load_checkpoint(latest_checkpoint(run))[1]["images_seen"] == seen + 64
    assert last.is_file()  # the first extension's end stays too
    grids = RunDir(run).extended_grids()
    assert [(g.step, g.res, g.images_seen) for g in grids] == [(2, 16, seen + 40), (2, 16, seen + 64)]
    names = [p.name for p in RunDir(run).training_grids()]
    assert names == ["01-8px.png", "02-16px.png", *(g.path.name for g in grids)]
    captions = [f.caption for b in run_blocks(run) for f in b.figures]  # the batch report shows each end
    assert captions[:4] == ["step 01: 8px", "step 02: 16px", f"step 02 trained longer: 16px, {seen + 40:,} images",
                            f"step 02 trained longer: 16px, {seen + 64:,} images"]


def test_an_interrupted_extension_resumes_and_still_keeps_the_first_finish(tmp_path):
    data = _random()
    cfg = preset("smoke", run="ext", out_root=str(tmp_path), images_per_res=16)
    run = train(cfg, dataset=data)
    first = load_file(run / "checkpoints" / "02-16px.safetensors")
    seen = load_checkpoint(latest_checkpoint(run))[1]["images_seen"]
    extended = cfg.replace(final_images=40, checkpoint_minutes=0.0)  # a periodic checkpoint every batch
    train(extended, dataset=data, resume=True, max_steps=2)  # stopped inside the extension
    meta = load_checkpoint(latest_checkpoint(run))[1]
    assert not meta["finished"] and seen < meta["images_seen"] < seen + 40
    train(extended, dataset=data, resume=True)
    last = latest_checkpoint(run)
    assert last.name == f"02-16px-{seen + 40:09d}img-final.safetensors" and load_checkpoint(last)[1]["finished"]
    kept = load_file(run / "checkpoints" / "02-16px.safetensors")
    assert all(torch.equal(kept[k], first[k]) for k in first)


def test_a_run_with_final_images_from_the_start_trains_them_at_alpha_one(tmp_path):
    cfg = preset("smoke", run="long", out_root=str(tmp_path), images_per_res=16, final_images=32)
    run = train(cfg, dataset=_random())
    last = [r for r in _batches(run) if r["res"] == 16]
    assert len(last) == (16 + 32) // cfg.batch_sizes[16] and last[-1]["alpha"] == 1.0
    assert latest_checkpoint(run).name == "02-16px.safetensors"  # a run that was never extended
