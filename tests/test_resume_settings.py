"""`brainlib train --resume` continues a run with the settings it saved: a preset's defaults never
replace them, only what the command names changes, and another class or an unreadable config is
refused with the file named."""
import json

import pytest

from brainlib.cli import main
from brainlib.config import ConfigError, preset, resumed_settings
from brainlib.training.checkpoints import latest_checkpoint


def _train(out, *extra):
    return main(["train", "--preset", "smoke", "--run", "r", "--out-root", str(out), *extra])


@pytest.fixture
def trained(tiny_phantom, tmp_path):
    """A smoke AD run on the tiny phantom with a seed, a schedule and a data folder the preset lacks."""
    assert _train(tmp_path, "--data", str(tiny_phantom), "--set", "seed=3",
                  "--set", "images_per_res=16", "--set", "lr=0.0005") == 0
    return tmp_path


def _saved(out):
    return json.loads((out / "r" / "config.json").read_text())


def test_a_resume_keeps_the_runs_settings_and_changes_only_what_it_names(trained):
    meta_path = latest_checkpoint(trained / "r").with_suffix(".json")  # as saved before output_lowpass existed
    meta = json.loads(meta_path.read_text())
    del meta["config"]["output_lowpass"]
    meta_path.write_text(json.dumps(meta))
    assert _train(trained, "--resume", "--set", "final_images=16") == 0
    saved = _saved(trained)
    assert (saved["seed"], saved["images_per_res"], saved["lr"]) == (3, 16, 0.0005)  # not the preset's 0 / 32 / 1e-3
    assert saved["data_root"].endswith("AD_NC") and saved["final_images"] == 16 and saved["class_name"] == "AD"
    assert latest_checkpoint(trained / "r").name.endswith("-final.safetensors")  # it trained 16 more images
    rows = [json.loads(line) for line in (trained / "r" / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in rows if r.get("kind") == "resume"]
    assert resumed and set(resumed[-1]["changed"]) == {"final_images"}  # a setting newer than the run is no change


def test_a_resume_as_another_class_or_with_a_broken_config_is_refused(trained, capsys):
    assert _train(trained, "--resume", "--class", "NC") == 2
    assert "run r trained class AD; it cannot go on as class NC" in capsys.readouterr().err
    (trained / "r" / "config.json").write_text("{broken")
    assert _train(trained, "--resume") == 2
    err = capsys.readouterr().err
    assert "config.json is not a readable run config" in err and str(trained / "r") in err


def test_a_run_without_a_saved_config_keeps_the_command_settings(tmp_path):
    cfg = preset("smoke", run="new", out_root=str(tmp_path), seed=5)
    assert resumed_settings(cfg, {"seed": "5"}) is cfg
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "config.json").write_text(json.dumps({**cfg.to_dict(), "class_name": "NC"}))
    with pytest.raises(ConfigError, match="trained class NC"):
        resumed_settings(cfg, {"class_name": "AD"})
    assert resumed_settings(cfg, {"lr": "0.01"}).class_name == "NC"  # the run's class when none is named
