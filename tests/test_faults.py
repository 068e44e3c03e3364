"""Faults never lose work: a training process killed with SIGKILL at arbitrary moments
resumes from its last complete checkpoint and ends exactly where an uninterrupted
run ends; every checkpoint left behind loads."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from brainlib.training.checkpoints import latest_checkpoint, load_checkpoint

# 20 batches per resolution, a checkpoint at every batch: kills land mid-step, mid-save
SETTINGS = ["--set", "images_per_res=160", "--set", "checkpoint_minutes=0"]


def _train_cmd(data: Path, out: Path, run: str, *, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "brainlib", "train", "--preset", "smoke", "--class", "AD", "--run", run,
           "--data", str(data), "--out-root", str(out), *SETTINGS]
    return cmd + (["--resume"] if resume else [])


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors, meta = load_checkpoint(latest_checkpoint(run_dir))
    assert meta["finished"] is True
    return {k: v for k, v in tensors.items() if k.startswith(("G/", "D/", "G_ema/"))}


def _logged_rows(run_dir: Path) -> int:
    """Rows in the run's metrics.jsonl (it grows as training goes on; a resume truncates it)."""
    try:
        return len((run_dir / "metrics.jsonl").read_bytes().splitlines())
    except FileNotFoundError:
        return 0


def test_sigkill_at_random_moments_then_resume_matches_uninterrupted_run(tiny_phantom, tmp_path):
    subprocess.run(_train_cmd(tiny_phantom, tmp_path, "whole"), check=True, capture_output=True)

    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        started = latest_checkpoint(tmp_path / "killed") is not None  # --resume needs a checkpoint
        rows = _logged_rows(tmp_path / "killed")
        proc = subprocess.Popen(_train_cmd(tiny_phantom, tmp_path, "killed", resume=started),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120  # however loaded the machine: wait until it trains
        while proc.poll() is None and _logged_rows(tmp_path / "killed") <= rows and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))  # then kill it mid-step or mid-save
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        latest = latest_checkpoint(tmp_path / "killed")
        if latest is not None:  # whatever the kill interrupted, the checkpoint it points to is whole
            load_checkpoint(latest)
    assert kills >= 1, "the run finished before any kill; the test no longer interrupts it"

    done = subprocess.run(_train_cmd(tiny_phantom, tmp_path, "killed", resume=True), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    whole, killed = _final_weights(tmp_path / "whole"), _final_weights(tmp_path / "killed")
    assert whole.keys() == killed.keys()
    different = [k for k in whole if not torch.equal(whole[k], killed[k])]
    assert not different, f"{len(different)} tensors differ after kill-and-resume, e.g. {different[:3]}"

    # no temporary files are mistaken for checkpoints, and every listed checkpoint loads
    for meta_path in (tmp_path / "killed" / "checkpoints").glob("*.json"):
        if meta_path.name != "latest.json" and meta_path.with_suffix(".safetensors").exists():
            load_checkpoint(meta_path.with_suffix(".safetensors"))
    batches = [json.loads(line)["batch"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
               if json.loads(line).get("kind") == "batch"]
    assert batches == sorted(set(batches)), "metrics.jsonl repeats or skips batches after resuming"
