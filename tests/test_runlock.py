"""One writer per folder: while a live process holds a run, a second training, resume or
evaluation of it is refused at once naming the holder, nothing is moved aside, and readers
(generate from the run into a new folder) work alongside; SIGKILL frees the lock. A resume
without a usable latest.json stops with a message instead of starting over."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from brainlib.cli import main
from brainlib.config import preset
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Generator
from brainlib.runlock import FolderBusyError, folder_lock, lock_path
from brainlib.training.checkpoints import CheckpointError, module_tensors, save_checkpoint
from brainlib.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
HOLD = "import sys, time\nfrom brainlib.runlock import folder_lock\n" \
       "with folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(300)\n"


@contextmanager
def holder(folder: Path) -> Iterator[subprocess.Popen]:
    """Another process holding `folder`'s lock until the block ends (or the test kills it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def saved_run(out_root: Path, name: str = "r") -> Path:
    """A run folder with one checkpoint of a random smoke generator."""
    cfg = preset("smoke", class_name="AD", run=name, out_root=str(out_root))
    torch.manual_seed(0)
    run_dir = out_root / name
    cfg.save(run_dir / "config.json")
    save_checkpoint(run_dir, "02-16px", module_tensors(Generator(network_settings(cfg)), "G_ema"),
                    {"config": cfg.to_dict(), "res": 16, "alpha": 1.0, "images_seen": 64, "finished": True})
    return run_dir


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_live_run_refuses_a_second_writer_naming_it_and_sigkill_frees_it(tmp_path, tiny_phantom, capsys):
    run_dir = saved_run(tmp_path)
    before = snapshot(run_dir)
    train_args = ["train", "--preset", "smoke", "--class", "AD", "--run", "r", "--data", str(tiny_phantom),
                  "--out-root", str(tmp_path)]
    with holder(run_dir) as proc:
        # a fresh training, from another process: one line, exit 2, the holder's PID and command
        done = subprocess.run([sys.executable, "-m", "brainlib", *train_args], capture_output=True, text=True,
                              env=ENV, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().count("\n") == 0
        assert f"{run_dir} is in use by process {proc.pid} (" in done.stderr and "runlock" in done.stderr
        capsys.readouterr()
        assert main([*train_args, "--resume"]) == 2
        assert f"process {proc.pid}" in capsys.readouterr().err
        assert main(["evaluate", "--run", "r", "--n", "4", "--out-root", str(tmp_path)]) == 2
        assert f"process {proc.pid}" in capsys.readouterr().err
        # reading the run works alongside: generate writes into a folder of its own
        assert main(["generate", "--model", "r", "--output", "alongside", "--n", "2", "--out-root", str(tmp_path)]) == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with folder_lock(run_dir) as previous:  # the kernel dropped the dead holder's lock
            assert previous["pid"] == proc.pid
    assert not list(tmp_path.glob("r.replaced-*"))  # the live run was never moved aside
    after = snapshot(run_dir)
    assert {k: v for k, v in after.items() if not k.startswith("generated_images")} == before
    assert not lock_path(run_dir).exists()  # a released lock leaves no file


def test_generate_into_an_output_being_written_is_refused(tmp_path, capsys):
    saved_run(tmp_path)
    output = tmp_path / "r" / "generated_images" / "same"
    with holder(output) as proc:
        assert main(["generate", "--model", "r", "--output", "same", "--n", "2", "--out-root", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"{output} is in use by process {proc.pid}" in err and err.count("\n") == 1
    assert not output.exists() and not (output.parent / ".same.tmp").exists()


def test_one_holder_per_folder_even_within_a_process(tmp_path):
    folder = tmp_path / "not-yet"
    with folder_lock(folder) as previous:
        assert previous is None and lock_path(folder).is_file() and not folder.exists()
        with pytest.raises(FolderBusyError, match=f"process {os.getpid()}"), folder_lock(folder):
            pass
    assert not lock_path(folder).exists()
    with folder_lock(tmp_path / "." / "not-yet"):  # another spelling, the same lock
        with pytest.raises(FolderBusyError):
            with folder_lock(folder):
                pass


def test_resume_without_a_usable_latest_json_stops_and_moves_nothing(tmp_path, capsys):
    run_dir = saved_run(tmp_path)
    cfg = preset("smoke", class_name="AD", run="r", out_root=str(tmp_path))
    (run_dir / "checkpoints" / "latest.json").unlink()
    before = snapshot(run_dir)
    with pytest.raises(CheckpointError, match=r'latest.json is missing.*newest: 02-16px.safetensors.*"checkpoint"'):
        train(cfg, resume=True)
    assert snapshot(run_dir) == before and not list(tmp_path.glob("r.replaced-*"))
    with pytest.raises(CheckpointError, match="no such run folder"):
        train(cfg.replace(run="never"), resume=True)
    assert not (tmp_path / "never").exists()
    (run_dir / "checkpoints" / "02-16px.safetensors").unlink()
    assert main(["train", "--preset", "smoke", "--run", "r", "--out-root", str(tmp_path), "--resume"]) == 2
    assert "holds no checkpoint yet; train without --resume" in capsys.readouterr().err
