"""brainlib.rundir names every file a run holds, with the names the trainer has always written."""
import json
from pathlib import Path

import pytest

from brainlib.cli import main
from brainlib.rundir import (
    BatchDir,
    RunDir,
    StepGrid,
    checkpoint_meta,
    eval_reports,
    extended_name,
    images_name,
    parse_extended_name,
    parse_images_name,
    parse_step_name,
    periodic_name,
    run_dir_of,
    step_name,
)


@pytest.fixture(scope="module")
def smoke_run(tiny_phantom, tmp_path_factory) -> RunDir:
    out_root = tmp_path_factory.mktemp("outputs")
    assert main(["train", "--preset", "smoke", "--class", "AD", "--run", "r", "--data", str(tiny_phantom),
                 "--out-root", str(out_root)]) == 0
    return RunDir.named("r", out_root)


def test_every_file_of_a_smoke_run_is_one_rundir_names(smoke_run):
    run = smoke_run
    checkpoints = [run.checkpoint(step_name(1, 8)), run.checkpoint(step_name(2, 16))]
    grids = [run.checkpoint_grid(step_name(1, 8)), run.checkpoint_grid(step_name(2, 16))]
    named = {run.config, run.latest, run.metrics, *grids,
             run.loss_per_batch_plot, run.loss_per_epoch_plot, *checkpoints, *map(checkpoint_meta, checkpoints)}
    on_disk = {p for p in run.path.rglob("*") if p.is_file()}
    assert on_disk == named
    assert {run.checkpoints, run.samples, run.plots} == {p for p in run.path.iterdir() if p.is_dir()}
    assert json.loads(run.latest.read_text()) == {"checkpoint": "02-16px.safetensors"}
    assert run.step_grids() == [StepGrid(1, 8, run.path / "samples" / "01-8px.png"),
                                StepGrid(2, 16, run.path / "samples" / "02-16px.png")]


def test_a_model_named_as_run_folder_or_checkpoint_has_the_same_run_dir(smoke_run):
    out_root = smoke_run.path.parent
    checkpoint = smoke_run.checkpoint("02-16px")
    assert run_dir_of("r", out_root=out_root) == smoke_run
    assert run_dir_of(smoke_run.path, out_root="elsewhere") == smoke_run
    assert run_dir_of(checkpoint) == smoke_run == RunDir.of_checkpoint(checkpoint)
    assert run_dir_of("r/checkpoints/02-16px.safetensors", out_root=out_root) == smoke_run
    assert RunDir.of_checkpoint(out_root / "loose.pt") == RunDir(out_root)  # a file outside checkpoints/
    with pytest.raises(FileNotFoundError, match="no run or checkpoint named 'nope'"):
        run_dir_of("nope", out_root=out_root)


def test_generate_writes_where_rundir_says(smoke_run):
    assert main(["generate", "--model", "r", "--output", "two", "--n", "2", "--out-root",
                 str(smoke_run.path.parent)]) == 0
    folder = smoke_run.generated_images("two")
    assert sorted(p.name for p in folder.iterdir()) == ["img_0.png", "img_1.png"]
    assert json.loads(smoke_run.generated_record("two").read_text())["n"] == 2
    assert smoke_run.generated_record("two") == folder.with_name("two.json")


@pytest.mark.parametrize("step, res", [(1, 8), (2, 16), (7, 512), (12, 4096)])
def test_step_names_round_trip(step, res):
    assert parse_step_name(step_name(step, res)) == (step, res)
    assert parse_step_name(periodic_name(step, res, 56)) is None
    assert parse_extended_name(extended_name(step, res, 56)) == (step, res, 56)
    assert parse_extended_name(periodic_name(step, res, 56)) is None
    assert parse_step_name(extended_name(step, res, 56)) is None


def test_only_the_trainers_step_grids_count_as_steps(tmp_path):
    run = RunDir(tmp_path)
    for name in ("02-16px", "01-8px", "10-2048px", "03_grid_AD_psi1.0", "03_truncation", "01-8px-000000032img"):
        path = run.samples / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
    assert [(g.step, g.res, g.path.name) for g in run.step_grids()] == [
        (1, 8, "01-8px.png"), (2, 16, "02-16px.png"), (10, 2048, "10-2048px.png")]
    assert RunDir(tmp_path / "empty").step_grids() == []


def test_training_grids_are_a_stylegans_steps_or_a_diffusion_runs_checkpoints_in_order(tmp_path):
    stylegan, diffusion = RunDir(tmp_path / "s"), RunDir(tmp_path / "d")
    for run, names in ((stylegan, ("02-16px", "01-8px", "03_grid_AD_psi1.0", "01-8px-000000032img")),
                       (diffusion, (images_name(64, 40_000, finished=True),
                                    images_name(64, 9_600, finished=False), "03_grid_AD_psi1.0"))):
        run.samples.mkdir(parents=True)
        for name in names:
            (run.samples / f"{name}.png").write_bytes(b"")
    assert [p.name for p in stylegan.training_grids()] == ["01-8px.png", "02-16px.png"]
    assert [p.name for p in diffusion.training_grids()] == ["64px-000009600img.png", "64px-000040000img-final.png"]
    assert diffusion.checkpoint_grid("64px-000009600img") == diffusion.training_grids()[0]
    assert diffusion.step_grids() == [] and RunDir(tmp_path / "empty").training_grids() == []


def test_a_diffusion_runs_grids_count_in_the_order_of_images_seen(tmp_path):
    assert images_name(16, 32) == "16px-000000032img" and images_name(64, 5, finished=True) == "64px-000000005img-final"
    assert parse_images_name(images_name(64, 500_000, finished=True)) == (64, 500_000, True)
    assert parse_images_name("02-16px") is None and parse_images_name("01-8px-000000032img") is None
    run = RunDir(tmp_path)
    run.samples.mkdir()
    for name in ("16px-000000064img-final", "16px-000000008img", "16px-000000032img-final", "02-16px", "03_grid_AD"):
        (run.samples / f"{name}.png").write_bytes(b"")
    assert [(g.images_seen, g.finished, g.res, g.path.stem) for g in run.images_grids()] == [
        (8, False, 16, "16px-000000008img"), (32, True, 16, "16px-000000032img-final"),
        (64, True, 16, "16px-000000064img-final")]
    assert [g.path.stem for g in run.step_grids()] == ["02-16px"]


def test_the_names_on_disk_stay_those_of_earlier_runs(tmp_path):
    run, batch = RunDir(tmp_path / "r"), BatchDir.named("demo", tmp_path)

    def relative(p: Path, base: Path = run.path) -> str:
        return p.relative_to(base).as_posix()

    assert [relative(p) for p in (run.config, run.latest, run.checkpoint("02-16px"), run.metrics,
                                  run.checkpoint_grid("02-16px"), run.loss_per_batch_plot, run.loss_per_epoch_plot,
                                  run.eval_report(), run.eval_figures(), run.eval_report(0.7), run.eval_figures(0.7),
                                  run.eval_report(seed=3), run.eval_figures(0.7, seed=3),
                                  run.generated_images("x"), run.generated_record("x"), run.projections,
                                  run.counterfactuals, run.explorer)] == [
        "config.json", "checkpoints/latest.json", "checkpoints/02-16px.safetensors", "metrics.jsonl",
        "samples/02-16px.png", "plots/loss_per_batch.png", "plots/loss_per_epoch.png", "eval.json", "eval",
        "eval-psi0.7.json", "eval-psi0.7", "eval-seed3.json", "eval-psi0.7-seed3",
        "generated_images/x", "generated_images/x.json", "projections",
        "counterfactuals", "explorer"]
    assert periodic_name(2, 16, 56) == "02-16px-000000056img"
    assert checkpoint_meta(run.checkpoint("01-8px")).name == "01-8px.json"
    assert [relative(p, batch.path) for p in (batch.notebooks, batch.plots, batch.timings, batch.eval_report(),
                                              batch.preset_eval_report("diffusion-demo"))] == [
        "notebooks", "plots", "timings.json", "eval.json", "eval-diffusion-demo.json"]
    assert batch.path == tmp_path / "demo" and Path(batch) == batch.path and str(run) == str(tmp_path / "r")


def test_eval_reports_lists_the_untruncated_reports_under_out_root(tmp_path):
    for rel in ("a/eval.json", "b/eval-psi0.5.json", "demo/eval.json", "c/eval/eval.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    assert eval_reports(tmp_path) == [tmp_path / "a" / "eval.json", tmp_path / "demo" / "eval.json"]
    assert eval_reports(tmp_path / "missing") == []
