"""RunConfig, presets and validation: every bad setting is a one-line error."""
import json
import os
import subprocess
import sys

import pytest

from brainlib.config import PRESETS, ConfigError, RunConfig, coerce_overrides, parse_overrides, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_round_trip(name, tmp_path):
    cfg = preset(name, run="x")
    assert cfg.resolutions[0] == cfg.start_res and cfg.resolutions[-1] == cfg.image_size
    path = tmp_path / "config.json"
    cfg.save(path)
    assert RunConfig.load(path) == cfg
    assert json.loads(path.read_text())["channels"]  # JSON keys are strings, loaded back as ints


def test_paper_preset_is_the_original_recipe():
    cfg = preset("paper")
    assert (cfg.z_dim, cfg.w_dim, cfg.mapping_layers) == (256, 256, 8)
    assert cfg.channels == {4: 256, 8: 256, 16: 256, 32: 256, 64: 128, 128: 64}
    assert cfg.batch_sizes == {4: 256, 8: 128, 16: 64, 32: 32, 64: 16, 128: 8}
    assert (cfg.lr, cfg.mapping_lr, cfg.betas) == (1e-3, 1e-5, (0.0, 0.99))
    assert (cfg.gp_weight, cfg.drift, cfg.epochs_per_res, cfg.fade_fraction) == (10.0, 0.001, 12.0, 0.5)
    assert cfg.resolutions == [8, 16, 32, 64, 128] and cfg.loss == "wgan-gp" and cfg.augment == "none"


def test_gpu_preset_is_stylegan2_at_the_papers_size():
    cfg, paper = preset("gpu"), preset("paper")
    assert (cfg.arch, cfg.image_size, cfg.augment, cfg.loss) == ("stylegan2", 128, "adaptive", "logistic-r1")
    assert (cfg.channels, cfg.batch_sizes, cfg.resolutions) == (paper.channels, paper.batch_sizes, paper.resolutions)
    assert paper.arch == "stylegan1"


def test_demo_sg2_is_the_demo_with_stylegan2_and_the_relativistic_loss_in_fewer_images():
    demo, sg2 = preset("demo").to_dict(), preset("demo-sg2").to_dict()
    changed = {k for k in demo if demo[k] != sg2[k]}
    assert changed == {"arch", "loss", "images_per_res"}
    assert (sg2["arch"], sg2["loss"]) == ("stylegan2", "rpgan-r1r2") and sg2["images_per_res"] < demo["images_per_res"]


def test_demo_long_is_the_demo_trained_on_at_full_resolution():
    demo, long = preset("demo").to_dict(), preset("demo-long").to_dict()
    assert {k for k in demo if demo[k] != long[k]} == {"final_images"} and long["final_images"] == 36_700


@pytest.mark.parametrize("overrides, words", [
    ({"class_name": "MCI"}, "class 'MCI'"),
    ({"image_size": 100}, "power of two"),
    ({"image_size": 4}, "below start_res"),
    ({"batch_sizes": {8: 0, 16: 8}}, "batch size for 8 px"),
    ({"data_root": "/no/such/folder"}, "/no/such/folder does not exist"),
    ({"loss": "hinge"}, "loss 'hinge'"),
    ({"arch": "stylegan3"}, "arch 'stylegan3' is not one of stylegan1, stylegan2"),
    ({"augment": "ada"}, "augment 'ada'"),
    ({"fade_fraction": 1.5}, "fade_fraction"),
    ({"images_per_res": {8: 64, 16: 0}}, "images_per_res"),
])
def test_bad_settings_are_one_line_errors(overrides, words):
    with pytest.raises(ConfigError) as e:
        preset("smoke", **overrides)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_unknown_preset_and_setting():
    with pytest.raises(ConfigError, match="unknown preset 'fast'.*smoke"):
        preset("fast")
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        preset("smoke", learning_rate=1)


@pytest.mark.parametrize("name, old_default, other", [
    ("coarse_lr_scale", 1.0, 0.2), ("coarse_lr_spared", 0, 1), ("lr_rampdown", 0.0, 0.3),
    ("n_critic", 1, 5), ("mapping_activation", "relu", "lrelu"),
    ("label_embed", True, False), ("log_every", 1, 10),
])
def test_a_saved_config_naming_a_removed_setting_loads_only_at_its_old_default(name, old_default, other, tmp_path):
    saved = preset("smoke").to_dict()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**saved, name: old_default}))
    assert RunConfig.load(path) == preset("smoke")
    path.write_text(json.dumps({**saved, name: other}))
    with pytest.raises(ConfigError) as e:
        RunConfig.load(path)
    assert f"setting {name}={other!r} was removed" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=f"setting '{name}' was removed"):
        preset("smoke", **{name: other})


def test_overrides_from_strings_are_typed():
    typed = coerce_overrides(parse_overrides(["lr=0.002", "loss=logistic-r1",
                                              "channels={\"4\": 8, \"8\": 8, \"16\": 8}",
                                              "splits=[\"train\"]", "data_root=/tmp", "betas=[0,0.99]"]))
    assert typed["betas"] == (0.0, 0.99) and isinstance(typed["betas"][0], float)  # Adam refuses an int
    assert typed["lr"] == 0.002 and typed["loss"] == "logistic-r1" and typed["splits"] == ["train"]
    assert typed["channels"] == {4: 8, 8: 8, 16: 8} and typed["data_root"] == "/tmp"
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])
    with pytest.raises(ConfigError, match="not valid JSON"):
        coerce_overrides({"lr": "fast"})


def test_images_per_res_per_step_from_a_string_survives_a_round_trip(tmp_path):
    from brainlib.training.schedule import schedule
    typed = coerce_overrides(parse_overrides(['images_per_res={"8": 64, "16": 96}']))
    cfg = preset("smoke", **typed)
    assert cfg.images_per_res == {8: 64, 16: 96}
    cfg.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json").images_per_res == {8: 64, 16: 96}
    assert [(r["res"], r["images"], r["fade_images"]) for r in schedule(cfg, 100)] == [(8, 64, 0), (16, 96, 48.0)]
    assert [r["images"] for r in schedule(cfg.replace(images_per_res=50), 100)] == [50, 50]


def test_conditional_classes():
    assert preset("smoke", class_name="both").classes == ["AD", "NC"]
    assert preset("smoke", class_name="NC").classes == ["NC"]


def test_cli_reports_config_errors_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "brainlib", "train", "--preset", "smoke", "--class", "MCI",
                             "--out-root", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "brainlib train: error: class 'MCI' is not one of AD, NC, both"
    assert not any(tmp_path.iterdir())  # nothing written before validation


LAZY = ('umap', 'nilearn', 'jupyterlab', 'ipywidgets', 'IPython', 'papermill', 'sklearn', 'pydicom', 'nibabel')


def test_importing_brainlib_needs_no_notebook_stack():
    code = ("import sys, brainlib, brainlib.cli, brainlib.config\n"
            f"bad = [m for m in {LAZY + ('torch',)} if m in sys.modules]\n"
            "assert not bad, bad")  # `brainlib --help` and `data census` start without torch
    subprocess.run([sys.executable, "-c", code], check=True)


def test_training_and_generation_import_no_notebook_stack():
    code = ("import sys, brainlib.training.trainer, brainlib.synthesis.sampling\n"
            f"bad = [m for m in {LAZY} if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_brainlib_makes_openmp_wait_passively_unless_told_otherwise():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, brainlib; print(os.environ['OMP_WAIT_POLICY'])"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True).stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True).stdout.strip() == "ACTIVE"
