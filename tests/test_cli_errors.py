"""Output that cannot be written (a full disk under the figures, say) and out-of-range settings end
`brainlib` with one line and exit 2; other errors keep their traceback."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from brainlib.cli import main
from brainlib.config import preset
from brainlib.networks.settings import network_settings
from brainlib.networks.stylegan1 import Generator
from brainlib.training.checkpoints import module_tensors, save_checkpoint


def test_a_full_disk_under_the_figures_is_one_line(tmp_path, tiny_phantom, capsys, monkeypatch):
    real_write = Path.write_bytes

    def full_for_plots(self, data):
        if self.name.startswith(".loss_per_batch.png."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_for_plots)
    args = ["train", "--preset", "smoke", "--class", "AD", "--run", "r", "--data", str(tiny_phantom),
            "--out-root", str(tmp_path)]
    assert main(args) == 2
    figure = tmp_path / "r" / "plots" / "loss_per_batch.png"
    assert capsys.readouterr().err.splitlines()[-1] == f"brainlib train: error: {figure}: the disk is full"
    assert not list(figure.parent.glob(".*"))  # the temporary file went with the error


def test_other_errors_are_not_swallowed(monkeypatch):
    import brainlib.synthesis.sampling as sampling

    def broken(**kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sampling, "generate_to_folder", broken)
    with pytest.raises(OSError, match="Input/output error"):
        main(["generate", "--model", "m", "--output", "x", "--n", "1"])
    monkeypatch.setattr(sampling, "generate_to_folder", lambda **kwargs: None + 1)
    with pytest.raises(TypeError):
        main(["generate", "--model", "m", "--output", "x", "--n", "1"])


@pytest.mark.parametrize("setting, words", [
    ("seed=-1", "seed must be a whole number, 0 or more (got -1)"),
    ('batch_sizes={"8": 5000, "16": 8}', "batch size for 8 px is 5000; at most 4096"),
])
def test_out_of_range_training_settings_are_refused(tmp_path, capsys, setting, words):
    assert main(["train", "--preset", "smoke", "--run", "r", "--out-root", str(tmp_path), "--set", setting]) == 2
    assert capsys.readouterr().err == f"brainlib train: error: {words}\n"
    assert list(tmp_path.iterdir()) == []


def test_evaluate_refuses_an_n_beyond_the_memory(tmp_path, capsys, monkeypatch):
    import brainlib.eval.evaluate as ev

    cfg = preset("smoke", class_name="AD", run="r", out_root=str(tmp_path))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "r", "02-16px", module_tensors(Generator(network_settings(cfg)), "G_ema"),
                    {"config": cfg.to_dict(), "res": 16, "alpha": 1.0, "images_seen": 64, "finished": True})
    monkeypatch.setattr(ev, "available_memory", lambda: 10**6)
    assert main(["evaluate", "--model", "r", "--n", "1000", "--out-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--n 1000: 1 x 1000 generated images at 16 px take 1.0 MB and 1.0 MB of memory" in err
    assert "ask for at most 488" in err


def test_evaluate_takes_its_runs_as_model_like_export_and_still_as_run():
    from brainlib.cli import build_parser
    parser = build_parser()
    assert parser.parse_args(["evaluate", "--model", "a", "b"]).model == ["a", "b"]
    assert parser.parse_args(["evaluate", "--run", "a", "b"]).model == ["a", "b"]  # the older spelling
    assert parser.parse_args(["export", "--model", "a", "b", "--out", "x", "--n", "2"]).model == ["a", "b"]
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--model", "a", "--run", "b"])
