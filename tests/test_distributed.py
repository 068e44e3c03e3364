"""Two CPU processes under torchrun (gloo): the run completes and rank 0 alone writes files."""
import json
import os
import subprocess
import sys
from pathlib import Path

from brainlib.training.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_gloo_run_completes_with_one_set_of_files(tiny_phantom, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "brainlib", "train",
           "--preset", "smoke", "--data", str(tiny_phantom), "--out-root", str(tmp_path),
           "--set", "max_images=16", "--set", "style_mixing_prob=0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "smoke-AD"  # torchrun itself would take --run (an abbreviation of --run-path)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl", "plots", "samples"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["01-8px.png", "02-16px.png"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "01-8px.json", "01-8px.safetensors", "02-16px.json", "02-16px.safetensors", "latest.json"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["batch"] for r in rows] == list(range(1, 9))  # one writer: 32 images per step, global batch 8
    assert done.stdout.count("training smoke-AD:") == 1 and "x 2 processes" in done.stdout
    tensors, meta = load_checkpoint(run / "checkpoints" / "02-16px.safetensors")
    assert meta["world_size"] == 2 and meta["finished"] and meta["images_seen"] == 64
    assert all(t.isfinite().all() for k, t in tensors.items() if k.startswith(("G/", "D/")))
