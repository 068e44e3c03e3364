"""brainlib.batch.pipeline.run_batch: notebooks run in order with the right parameters, a
failing notebook stops the batch with its cell named, finished runs are skipped, and
the summary page shows what the runs wrote.

Most tests use tiny stand-in notebooks (no torch, seconds each) written to tmp_path;
the last one runs the workbook's real notebooks on the smoke preset."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
import torch
from PIL import Image

from brainlib.batch.pipeline import PipelineError, batch_runs, run_batch, training_finished, usable_cores
from brainlib.batch.report_page import format_seconds
from brainlib.config import preset
from brainlib.training.checkpoints import latest_checkpoint, load_checkpoint
from brainlib.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

PNG_CODE = "from PIL import Image; Image.new('L', (8, 8), {v}).save({path})"


def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    first = nbformat.v4.new_code_cell(parameters)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def stand_in_notebooks(folder: Path, fail_in: str | None = None) -> Path:
    """Four notebooks with the real ones' parameter names that write what the real
    ones write (latest.json, samples, plots, eval.json, an embedding figure)."""
    folder.mkdir(parents=True, exist_ok=True)
    common = 'data_root = None\nout_root = "outputs"\npreset = "demo"\n'
    log = "import json, os, pathlib\nlog = pathlib.Path(out_root) / 'calls.jsonl'\n"
    write_notebook(folder / "01_data.ipynb", common + 'run_name = "data"\nimage_size = 128\n',
                   log + "log.parent.mkdir(parents=True, exist_ok=True)\n"
                   "log.open('a').write(json.dumps(dict(nb='01', data_root=data_root, preset=preset, cwd=os.getcwd(),"
                   " run=run_name, image_size=image_size)) + '\\n')",
                   "plots = pathlib.Path(out_root) / run_name / 'plots'\nplots.mkdir(parents=True, exist_ok=True)\n"
                   + PNG_CODE.format(v=50, path="plots / 'samples_per_class.png'"))
    write_notebook(folder / "02_train_progressive.ipynb",
                   common + 'class_name = "AD"\nrun_name = "demo-AD"\nresume = False\n',
                   log + "log.open('a').write(json.dumps(dict(nb='02', class_name=class_name, run=run_name, "
                   "resume=resume, preset=preset)) + '\\n')",
                   "run = pathlib.Path(out_root) / run_name\n"
                   "for sub in ('checkpoints', 'samples', 'plots'): (run / sub).mkdir(parents=True, exist_ok=True)\n"
                   "(run / 'checkpoints' / '02-16px.json').write_text(json.dumps(dict(finished=True)))\n"
                   "(run / 'checkpoints' / 'latest.json')"
                   ".write_text(json.dumps(dict(checkpoint='02-16px.safetensors')))\n"
                   + PNG_CODE.format(v=10, path="run / 'samples' / '02-16px.png'") + "\n"
                   + PNG_CODE.format(v=20, path="run / 'samples' / '01-8px.png'") + "\n"
                   + PNG_CODE.format(v=30, path="run / 'plots' / 'loss_per_batch.png'"))
    write_notebook(folder / "03_samples.ipynb", common + 'runs = ["demo-AD", "demo-NC"]\n',
                   log + "log.open('a').write(json.dumps(dict(nb='03', runs=runs, preset=preset)) + '\\n')",
                   "raise ValueError('the sampler broke')" if fail_in == "03" else "print('ok')")
    write_notebook(folder / "04_umap.ipynb", common + 'runs = ["demo-AD", "demo-NC"]\n',
                   log + "log.open('a').write(json.dumps(dict(nb='04', runs=runs, preset=preset)) + '\\n')",
                   "run = pathlib.Path(out_root) / runs[0]\n(run / 'eval').mkdir(parents=True, exist_ok=True)\n"
                   "for r in runs: (pathlib.Path(out_root) / r / 'eval.json').write_text("
                   "json.dumps({'fid': {'value': 12.5, 'floor': 3.25}, 'n': 64}))\n"
                   + PNG_CODE.format(v=40, path="run / 'eval' / 'umap.png'"))
    return folder


def calls(out_root: Path) -> list[dict]:
    return [json.loads(line) for line in (out_root / "calls.jsonl").read_text().splitlines()]


def test_batch_runs_each_notebook_with_its_parameters_and_writes_the_summary(tmp_path, capsys):
    notebooks = stand_in_notebooks(tmp_path / "nb")
    data = tmp_path / "data"
    data.mkdir()
    summary = run_batch(preset="smoke", name="b1", data_root=data, out_root=tmp_path / "out",
                        notebooks_dir=notebooks)
    out = tmp_path / "out"
    assert summary == out / "b1" / "summary.html"
    made = calls(out)
    assert [c["nb"] for c in made] == ["01", "02", "02", "03", "04"]
    assert made[0]["data_root"] == str(data) and made[0]["preset"] == "smoke"
    assert made[0]["cwd"] == str(ROOT)  # papermill runs in the workbook folder
    assert made[0]["run"] == "b1" and made[0]["image_size"] == 16  # data figures in the batch folder, smoke size
    assert sorted((c["class_name"], c["run"]) for c in made[1:3]) == [("AD", "b1-AD"), ("NC", "b1-NC")]  # at once
    assert made[3]["runs"] == made[4]["runs"] == ["b1-AD", "b1-NC"]
    executed = sorted(p.name for p in (out / "b1" / "notebooks").glob("*.ipynb"))
    assert executed == ["01_data.ipynb", "02_train_progressive-AD.ipynb", "02_train_progressive-NC.ipynb",
                        "03_samples.ipynb", "04_umap.ipynb"]
    # the executed notebook carries the injected parameters
    injected = nbformat.read(out / "b1" / "notebooks" / "02_train_progressive-NC.ipynb", as_version=4).cells[1]
    assert "injected-parameters" in injected.metadata["tags"] and 'class_name = "NC"' in injected.source
    lines = sorted(line for line in capsys.readouterr().out.splitlines() if line.startswith("["))  # AD or NC first
    assert len(lines) == 5 and lines[1].startswith("[2/5] 02_train_progressive AD ... done in ")
    assert all(re.search(r"done in (\d+\.\d+s|\d+m\d\ds)$", line) for line in lines)

    page = summary.read_text()
    assert page.count("src='data:image/png;base64,") == 1 + 2 * 3 + 1  # data, 2 runs x (2 grids + loss), UMAP
    assert "samples per class" in page
    assert page.index("step 01: 8px") < page.index("step 02: 16px")  # steps in the trainer's order
    # the stand-in eval.json is no evaluation report: the page says so instead of dumping its keys
    assert "Not measured: no run of this batch holds an eval.json" in page and "fid.value" not in page
    md = (out / "b1" / "summary.md").read_text()
    assert "![umap](summary_files/b1-AD_umap.png)" in md and (out / "b1" / "summary_files" / "b1-AD_umap.png").is_file()
    assert "| 02_train_progressive NC | done |" in md
    timings = json.loads((out / "b1" / "timings.json").read_text())
    assert [t["status"] for t in timings] == ["done"] * 5 and all(t["seconds"] > 0 for t in timings)


def test_several_presets_train_two_at_a_time_in_the_order_given_then_sample_and_evaluate_each(tmp_path, capsys):
    notebooks = stand_in_notebooks(tmp_path / "nb")
    out = tmp_path / "out"
    summary = run_batch(preset=["smoke", "diffusion-smoke"], out_root=out, notebooks_dir=notebooks, parallel=True)
    batch = out / "smoke+diffusion-smoke"
    assert summary == batch / "summary.html"
    made = calls(out)
    assert [c["nb"] for c in made] == ["01"] + ["02"] * 4 + ["03", "03", "04", "04"]
    trainings = [(c["preset"], c["class_name"], c["run"]) for c in made if c["nb"] == "02"]
    assert sorted(trainings[:2]) == [("smoke", "AD", "smoke-AD"), ("smoke", "NC", "smoke-NC")]
    assert sorted(trainings[2:]) == [("diffusion-smoke", "AD", "diffusion-smoke-AD"),
                                     ("diffusion-smoke", "NC", "diffusion-smoke-NC")]
    assert [(c["preset"], c["runs"]) for c in made if c["nb"] in ("03", "04")] == [
        ("smoke", ["smoke-AD", "smoke-NC"]), ("diffusion-smoke", ["diffusion-smoke-AD", "diffusion-smoke-NC"])] * 2
    executed = batch / "notebooks"
    assert sorted(p.name for p in executed.glob("*.ipynb")) == sorted(
        ["01_data.ipynb"] + [f"02_train_progressive-{p}-{c}.ipynb" for p in ("smoke", "diffusion-smoke")
                             for c in ("AD", "NC")]
        + [f"{nb}-{p}.ipynb" for nb in ("03_samples", "04_umap") for p in ("smoke", "diffusion-smoke")])
    first = [executed / f"02_train_progressive-smoke-{c}.ipynb" for c in ("AD", "NC")]
    second = [executed / f"02_train_progressive-diffusion-smoke-{c}.ipynb" for c in ("AD", "NC")]
    assert overlap(*first) and overlap(*second)  # each preset's pair side by side ...
    assert max(ran_between(p)[1] for p in first) <= min(ran_between(p)[0] for p in second)  # ... never four at once
    printed = capsys.readouterr().out
    assert "[4/9] 02_train_progressive diffusion-smoke AD ... done in" in printed
    assert "[9/9] 04_umap diffusion-smoke ... done in" in printed
    md = (batch / "summary.md").read_text()
    assert md.startswith("# Batch smoke+diffusion-smoke: AD and NC, presets smoke and diffusion-smoke")
    assert md.index("### smoke\n") < md.index("### diffusion-smoke\n") < md.index("## Real and generated slices")
    assert "brainlib run --preset smoke --preset diffusion-smoke --classes AD NC --out-root " in md  # no --name


def test_run_names_of_one_preset_stay_those_of_before_and_several_presets_never_collide():
    assert batch_runs(["demo"], ["AD", "NC"]) == {"demo": ["demo-AD", "demo-NC"]}
    assert batch_runs(["demo"], ["both"], "cond") == {"demo": ["cond-both"]}
    assert batch_runs(["demo", "diffusion-demo"], ["AD", "NC"]) == {
        "demo": ["demo-AD", "demo-NC"], "diffusion-demo": ["diffusion-demo-AD", "diffusion-demo-NC"]}
    assert batch_runs(["demo", "diffusion-demo"], ["NC"], "b") == {"demo": ["b-demo-NC"],
                                                                 "diffusion-demo": ["b-diffusion-demo-NC"]}


def test_rerun_skips_finished_training_but_still_samples_and_evaluates(tmp_path, capsys):
    notebooks = stand_in_notebooks(tmp_path / "nb")
    out = tmp_path / "out"
    run_batch(preset="smoke", classes=["NC"], out_root=out, notebooks_dir=notebooks)
    assert training_finished(out / "smoke-NC")
    capsys.readouterr()
    run_batch(preset="smoke", classes=["NC"], out_root=out, notebooks_dir=notebooks)
    assert [c["nb"] for c in calls(out)] == ["01", "02", "03", "04", "01", "03", "04"]
    printed = capsys.readouterr().out
    assert "[2/4] 02_train_progressive NC ... skipped" in printed
    run_batch(preset="smoke", classes=["NC"], out_root=out, notebooks_dir=notebooks, retrain=True)
    assert [c["nb"] for c in calls(out)][-4:] == ["01", "02", "03", "04"]
    assert [c["resume"] for c in calls(out) if c["nb"] == "02"] == [False, False]  # fresh, then retrained
    latest = out / "smoke-NC" / "checkpoints" / "02-16px.json"
    latest.write_text(json.dumps(dict(finished=False)))  # an interrupted run continues
    run_batch(preset="smoke", classes=["NC"], out_root=out, notebooks_dir=notebooks)
    assert [c["resume"] for c in calls(out) if c["nb"] == "02"][-1] is True


def test_conditional_batch_trains_one_model_named_both(tmp_path):
    notebooks = stand_in_notebooks(tmp_path / "nb")
    run_batch(preset="smoke", conditional=True, name="c", out_root=tmp_path / "out", notebooks_dir=notebooks)
    made = calls(tmp_path / "out")
    assert [(c["class_name"], c["run"]) for c in made if c["nb"] == "02"] == [("both", "c-both")]
    assert made[-1]["runs"] == ["c-both"]


def test_failing_notebook_stops_the_batch_names_the_cell_and_keeps_the_notebook(tmp_path, capsys):
    notebooks = stand_in_notebooks(tmp_path / "nb", fail_in="03")
    out = tmp_path / "out"
    with pytest.raises(PipelineError) as err:
        run_batch(preset="smoke", classes=["AD"], out_root=out, notebooks_dir=notebooks)
    message = str(err.value)
    kept = out / "smoke" / "notebooks" / "03_samples.ipynb"
    assert "03_samples" in message and "cell 3" in message and "ValueError: the sampler broke" in message
    assert str(kept) in message
    executed = nbformat.read(kept, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs",
                                                                                []) if o.output_type == "error"]
    assert errors and errors[0]["evalue"] == "the sampler broke"
    assert "04" not in [c["nb"] for c in calls(out)]  # the batch stopped
    page = (out / "smoke" / "summary.html").read_text()  # what the batch made, with the failure on top
    assert "The batch stopped: 03_samples failed in cell 3" in page and "Run smoke-AD: training" in page
    printed = capsys.readouterr().out
    assert "03_samples ... FAILED after" in printed and "what the batch made so far:" in printed
    statuses = {t["label"]: t["status"] for t in json.loads((out / "smoke" / "timings.json").read_text())}
    assert statuses == {"01_data": "done", "02_train_progressive AD": "done", "03_samples": "failed",
                        "04_umap": "pending"}


def test_cli_exits_non_zero_with_one_line_naming_the_failing_notebook(tmp_path):
    notebooks = stand_in_notebooks(tmp_path / "nb", fail_in="03")
    code = ("import sys, brainlib.batch.pipeline as p, brainlib.cli as c\n"
            "real = p.run_batch\n"
            f"p.run_batch = lambda **kw: real(notebooks_dir={str(notebooks)!r}, **kw)\n"
            "sys.exit(c.main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "run", "--preset", "smoke", "--classes", "AD",
                           "--out-root", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("brainlib run: error: 03_samples failed in cell 3")
    # no traceback of the CLI process itself: its frames would start at the `-c` code, "<string>".
    # (A notebook kernel may log its own zmq shutdown traceback to the shared stderr on a busy machine.)
    assert 'File "<string>"' not in proc.stderr and "brainlib/cli.py" not in proc.stderr


def test_bad_arguments_fail_before_any_notebook_runs(tmp_path):
    notebooks = stand_in_notebooks(tmp_path / "nb")
    with pytest.raises(ValueError, match="classes"):
        run_batch(preset="smoke", classes=["AD", "MCI"], out_root=tmp_path, notebooks_dir=notebooks)
    with pytest.raises(ValueError, match="unknown preset"):
        run_batch(preset="huge", out_root=tmp_path, notebooks_dir=notebooks)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        run_batch(preset=["smoke", "huge"], out_root=tmp_path, notebooks_dir=notebooks)
    with pytest.raises(ValueError, match="each once"):
        run_batch(preset=["smoke", "diffusion-smoke", "smoke"], out_root=tmp_path, notebooks_dir=notebooks)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_batch(preset="smoke", data_root=tmp_path / "nowhere", out_root=tmp_path, notebooks_dir=notebooks)
    (notebooks / "04_umap.ipynb").unlink()
    with pytest.raises(PipelineError, match="04_umap.ipynb is missing"):
        run_batch(preset="smoke", out_root=tmp_path, notebooks_dir=notebooks)
    write_notebook(notebooks / "02_train_progressive.ipynb", 'preset = "demo"\n', "pass")
    with pytest.raises(PipelineError, match="must declare class_name and run_name"):
        run_batch(preset="smoke", out_root=tmp_path, notebooks_dir=notebooks)
    assert not (tmp_path / "calls.jsonl").exists()


def test_training_finished_reads_the_checkpoint_the_pointer_names(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints"
    assert not training_finished(tmp_path / "run")
    ckpt.mkdir(parents=True)
    (ckpt / "latest.json").write_text(json.dumps({"checkpoint": "01-8px.safetensors"}))
    (ckpt / "01-8px.json").write_text(json.dumps({"finished": False, "res": 8}))
    assert not training_finished(tmp_path / "run")
    (ckpt / "01-8px.json").write_text(json.dumps({"finished": True, "res": 8}))
    assert training_finished(tmp_path / "run")
    (ckpt / "latest.json").write_text("{not json")
    assert not training_finished(tmp_path / "run")


def test_format_seconds():
    assert [format_seconds(s) for s in (3.44, 478, 3720, None)] == ["3.4s", "7m58s", "1h02m", "-"]


def test_smoke_batch_of_the_workbook_notebooks_then_a_rerun_that_skips_training(capsys):
    """The real notebooks, end to end on the smoke preset and the tiny phantom."""
    from smoke_batch import refresh, smoke_batch, tiny_data
    out_root = smoke_batch()
    batch = out_root / refresh.SMOKE_NAME
    executed = sorted(p.name for p in (batch / "notebooks").glob("*.ipynb"))
    assert executed == ["01_data.ipynb", "02_train_progressive-AD.ipynb", "02_train_progressive-NC.ipynb",
                        "03_samples.ipynb", "04_umap.ipynb"]
    for cls in ("AD", "NC"):
        assert training_finished(out_root / f"smoke-{cls}")
        assert list((out_root / f"smoke-{cls}" / "samples").glob("*.png"))
    page = (batch / "summary.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 * 2 + 4 + 1  # grids of two runs, real/generated, UMAP
    assert "Not measured" not in page and "data-metric='swd' data-class='NC'" in page
    assert "<img class='grid' src='data:image/png;base64," in page and "alt='NC: real'" in page
    assert (batch / "summary.md").is_file() and (batch / "eval.json").is_file()

    latest = {c: (out_root / f"smoke-{c}" / "checkpoints" / "latest.json").stat().st_mtime_ns for c in ("AD", "NC")}
    capsys.readouterr()
    refresh.run_smoke_batch(out_root, tiny_data())
    printed = capsys.readouterr().out
    assert "02_train_progressive AD ... skipped" in printed and "02_train_progressive NC ... skipped" in printed
    assert re.search(r"\[5/5\] 04_umap \.\.\. done in", printed)
    assert latest == {c: (out_root / f"smoke-{c}" / "checkpoints" / "latest.json").stat().st_mtime_ns
                      for c in ("AD", "NC")}


@pytest.mark.slow
def test_one_class_batch_on_a_dataset_of_normal_controls_only(tmp_path):
    """The real notebooks with one class on a dataset without AD: 01 loads NC alone, 04
    evaluates it alone and marks the AD-NC figures not applicable."""
    from smoke_batch import tiny_data
    data = tmp_path / "NC_only"
    shutil.copytree(tiny_data(), data, ignore=shutil.ignore_patterns("AD"))
    summary = run_batch(preset="smoke", classes=["NC"], data_root=data, name="nc", out_root=tmp_path / "out",
                        parameters={"n_per_class": 40})
    report = json.loads((tmp_path / "out" / "nc-NC" / "eval.json").read_text())
    assert report["runs"] == ["nc-NC"] and list(report["per_class"]) == ["NC"]
    assert report["class_contrast"] == {"not_applicable": "needs both AD and NC"}
    executed = nbformat.read(tmp_path / "out" / "nc" / "notebooks" / "01_data.ipynb", as_version=4)
    assert "per class {'NC': " in "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                                            for o in c.get("outputs", []))
    assert "needs both AD and NC" in summary.read_text()


@pytest.mark.slow
def test_a_stylegan_and_a_diffusion_preset_in_one_batch_side_by_side_in_one_report(tmp_path):
    """smoke and diffusion-smoke end to end on the tiny phantom through the workbook's four
    notebooks: each preset trained, sampled and evaluated, one page with a headline table per
    preset and real, StyleGAN and diffusion slices in one figure."""
    from smoke_batch import tiny_data
    out = tmp_path / "out"
    summary = run_batch(preset=["smoke", "diffusion-smoke"], data_root=tiny_data(), out_root=out,
                        parameters={"n_per_class": 40})
    batch = summary.parent
    for run in ("smoke-AD", "smoke-NC", "diffusion-smoke-AD", "diffusion-smoke-NC"):
        assert training_finished(out / run)
    assert json.loads((out / "diffusion-smoke-NC" / "config.json").read_text())["family"] == "diffusion"
    for name in ("smoke", "diffusion-smoke"):
        copy = json.loads((batch / f"eval-{name}.json").read_text())
        assert copy["runs"] == [f"{name}-AD", f"{name}-NC"]
    assert not (batch / "eval.json").exists()
    md = (batch / "summary.md").read_text()
    head = "| class | figure | generated | real-vs-real floor | ratio | verdict |"
    first = md[md.index("## How close to real"):md.index("## Real and generated slices")]
    tables = re.split(r"^### ", first, flags=re.M)[1:]
    assert [t.splitlines()[0] for t in tables] == ["smoke (StyleGAN)", "diffusion-smoke (diffusion)"]
    assert all(head in t and "| AD | SWD ×1e3 |" in t and "| NC | FID (encoder) |" in t for t in tables)
    assert "The floors are the same in every table" in first
    figure = batch / "summary_files" / "real_and_generated_side_by_side.png"
    assert f"](summary_files/{figure.name})" in md
    with Image.open(figure) as im:  # two rows (AD, NC) of three 4x4 grids: real, StyleGAN, diffusion
        assert im.width > 3 * 256 and im.height > 2 * 256
    assert "Samples at each checkpoint (fixed seeds, EMA denoiser)" in md


def ran_between(executed: Path) -> tuple[datetime, datetime]:
    """When papermill started and ended an executed notebook."""
    meta = nbformat.read(executed, as_version=4).metadata.papermill
    return datetime.fromisoformat(meta["start_time"]), datetime.fromisoformat(meta["end_time"])


def overlap(a: Path, b: Path) -> bool:
    (start_a, end_a), (start_b, end_b) = ran_between(a), ran_between(b)
    return start_a < end_b and start_b < end_a


def test_trainings_run_side_by_side_and_a_failing_one_lets_the_other_finish(tmp_path, capfd):
    notebooks = stand_in_notebooks(tmp_path / "nb")
    write_notebook(notebooks / "02_train_progressive.ipynb",
                   'data_root = None\nout_root = "outputs"\npreset = "demo"\nclass_name = "AD"\nrun_name = "x"\n',
                   "import pathlib, time\ntime.sleep(3 if class_name == 'NC' else 0)",
                   "if class_name == 'AD':\n    raise ValueError('the trainer broke')",
                   "pathlib.Path(out_root, run_name).mkdir(parents=True)\n"
                   "pathlib.Path(out_root, run_name, 'trained').write_text(class_name)")
    out = tmp_path / "out"
    with pytest.raises(PipelineError, match=r"02_train_progressive AD failed in cell 3 .*the trainer broke"):
        run_batch(preset="smoke", out_root=out, notebooks_dir=notebooks, parallel=True)
    assert (out / "smoke-NC" / "trained").read_text() == "NC"  # finished after AD had failed
    executed = out / "smoke" / "notebooks"
    assert overlap(executed / "02_train_progressive-AD.ipynb", executed / "02_train_progressive-NC.ipynb")
    statuses = [t["status"] for t in json.loads((out / "smoke" / "timings.json").read_text())]
    assert statuses == ["done", "failed", "done", "pending", "pending"]
    printed, errors = capfd.readouterr()
    assert "[2/5] 02_train_progressive AD ... FAILED after" in printed
    assert "[3/5] 02_train_progressive NC ... done in" in printed
    assert "without encryption" not in errors and "TCP" not in errors  # kernels on private Unix sockets


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(") ", 1)[-1][:1] != "Z"


def test_ctrl_c_stops_the_kernels_records_interrupted_and_prints_one_line(tmp_path):
    notebooks = stand_in_notebooks(tmp_path / "nb")
    write_notebook(notebooks / "02_train_progressive.ipynb",
                   'data_root = None\nout_root = "outputs"\npreset = "demo"\nclass_name = "AD"\nrun_name = "x"\n',
                   "import os, pathlib, time\n"
                   "pathlib.Path(out_root, f'kernel-{class_name}.pid').write_text(str(os.getpid()))\n"
                   "time.sleep(600)")
    out = tmp_path / "out"
    code = ("import signal, sys, brainlib.batch.pipeline as p, brainlib.cli as c\n"
            # Ctrl-C raises KeyboardInterrupt, as in a terminal, even if pytest was started ignoring it
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "real = p.run_batch\n"
            f"p.run_batch = lambda **kw: real(notebooks_dir={str(notebooks)!r}, parallel=True, **kw)\n"
            "sys.exit(c.main(sys.argv[1:]))")
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        batch = subprocess.Popen([sys.executable, "-c", code, "run", "--preset", "smoke", "--out-root", str(out)],
                                 stdout=stdout, stderr=stderr)
        pid_files = [out / "kernel-AD.pid", out / "kernel-NC.pid"]
        deadline = time.monotonic() + 240
        while not all(p.is_file() and p.read_text() for p in pid_files) and batch.poll() is None:
            assert time.monotonic() < deadline, "the two training kernels never started"
            time.sleep(0.2)
        batch.send_signal(signal.SIGINT)
        assert batch.wait(timeout=60) == 130
    errors = (tmp_path / "stderr").read_text().strip().splitlines()
    assert len(errors) == 1, errors  # no traceback, of the batch or of a kernel
    assert errors[0].startswith("brainlib run: interrupted during 02_train_progressive AD, 02_train_progressive NC")
    statuses = {t["label"]: t["status"] for t in json.loads((out / "smoke" / "timings.json").read_text())}
    assert statuses == {"01_data": "done", "02_train_progressive AD": "interrupted",
                        "02_train_progressive NC": "interrupted", "03_samples": "pending", "04_umap": "pending"}
    for cls in ("AD", "NC"):  # papermill wrote the cut-short notebooks whole
        assert nbformat.read(out / "smoke" / "notebooks" / f"02_train_progressive-{cls}.ipynb", as_version=4).cells
    kernels = [int(p.read_text()) for p in pid_files]
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in kernels):
        assert time.monotonic() < deadline, "a training kernel outlived the interrupted batch"
        time.sleep(0.1)


def test_smoke_batch_log_shows_each_trainings_progress_while_it_trains():
    """The session's smoke batch printed to a file (tests/smoke_batch.py), lines every 0.2 s."""
    from smoke_batch import smoke_batch
    log = (smoke_batch() / "batch.log").read_text().splitlines()
    trainings_start = next(i for i, line in enumerate(log) if line.startswith("[1/5] 01_data ... done in"))
    for cls in ("AD", "NC"):
        done = rf"\[\d/5\] 02_train_progressive {cls} \.\.\. done"
        end = next(i for i, line in enumerate(log) if re.match(done, line))
        during = log[trainings_start + 1:end]
        assert any(re.match(rf"  02_train_progressive {cls}: step [12]/2 (8|16)px, \d+/64 images", line)
                   for line in during), "\n".join(log)


def test_side_by_side_smoke_trainings_equal_trainings_alone_with_as_many_threads(tmp_path):
    """The smoke batch trains AD and NC at once; each model is bit for bit the one a training
    alone makes with the thread count its kernel had. (A different thread count changes the
    float order of the CPU kernels: 1 against 2 threads differ by up to ~1e-5 after the smoke run.)"""
    from smoke_batch import smoke_batch, tiny_data
    out_root = smoke_batch()
    executed = out_root / "smoke" / "notebooks"
    assert overlap(executed / "02_train_progressive-AD.ipynb", executed / "02_train_progressive-NC.ipynb")
    kernel_threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, usable_cores() // 2))
    before = torch.get_num_threads()
    torch.set_num_threads(kernel_threads)
    try:
        for cls in ("AD", "NC"):
            train(preset("smoke", class_name=cls, run=f"alone-{cls}", out_root=str(tmp_path),
                         data_root=str(tiny_data())))
    finally:
        torch.set_num_threads(before)
    for cls in ("AD", "NC"):
        together, _ = load_checkpoint(latest_checkpoint(out_root / f"smoke-{cls}"))
        alone, _ = load_checkpoint(latest_checkpoint(tmp_path / f"alone-{cls}"))
        assert together.keys() == alone.keys() and len(alone) > 100
        assert [k for k in alone if not torch.equal(alone[k], together[k])] == []
