"""brainlib.batch.training_watch: the batch reads a running training's metrics.jsonl as it
grows (torn lines, a resume's rewrite, an earlier run's file) and prints what `brainlib
train` prints: step, resolution, images, img/s, time left."""
import json
import re
import time

from brainlib.batch.training_watch import MetricsTail, TrainingProgress
from brainlib.config import preset


def append(path, *rows, tail=""):
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows) + tail)


def batch_row(images, step=1, res=8):
    return {"kind": "batch", "step": step, "res": res, "images_seen": images, "batch": images // 8}


def test_tail_reads_only_new_complete_rows_and_follows_a_rewritten_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.new_rows() == []  # no file yet
    append(path, batch_row(8), tail='{"kind": "batch", "ima')  # the trainer is mid-line
    assert tail.new_rows() == [batch_row(8)]
    append(path, tail='ges_seen": 16}\n')
    assert tail.new_rows() == [{"kind": "batch", "images_seen": 16}]
    assert tail.new_rows() == []
    replacement = tmp_path / "new.jsonl"  # a resume rewrites the file atomically, shorter
    append(replacement, {"kind": "resume", "batch": 1})
    replacement.replace(path)
    assert tail.new_rows() == [{"kind": "resume", "batch": 1}]


def test_tail_ignores_the_file_an_earlier_run_left(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, batch_row(800))
    tail = MetricsTail(path)
    assert tail.new_rows() == []  # the earlier run's rows
    path.rename(tmp_path / "old.jsonl")  # the new training moves the old run aside ...
    append(path, batch_row(8))  # ... and starts its own file
    assert tail.new_rows() == [batch_row(8)]


def test_log_lines_name_step_resolution_images_rate_and_time_left(tmp_path, capsys):
    run = tmp_path / "demo-AD"
    run.mkdir()
    preset("smoke", run="demo-AD").save(run / "config.json")  # 32 images at 8 px, 32 at 16 px
    progress = TrainingProgress([("02_train_progressive AD", run)], interval=0.0, mode="lines")
    with progress:
        progress.poll()
        assert capsys.readouterr().out == "  02_train_progressive AD: preparing, no batch trained yet\n"
        append(run / "metrics.jsonl", batch_row(8))
        progress.poll()
        time.sleep(0.05)
        append(run / "metrics.jsonl", batch_row(16), batch_row(24))
        progress.poll()
        line = capsys.readouterr().out.splitlines()[-1]
        assert re.fullmatch(r"  02_train_progressive AD: step 1/2 8px, 24/64 images, [\d.]+ img/s, 38%, \d+s left",
                            line)
        append(run / "metrics.jsonl", batch_row(64, step=2, res=16))
        progress.poll()
        assert capsys.readouterr().out.startswith("  02_train_progressive AD: step 2/2 16px, 64/64 images")
        progress.poll()  # trained, while the notebook goes on
        assert "trained 64 images; the notebook is drawing its figures" in capsys.readouterr().out
        progress.finished("02_train_progressive AD")
        progress.poll()
        assert capsys.readouterr().out == ""  # a finished notebook is no longer reported


def test_lines_come_at_the_interval_not_at_every_poll(tmp_path, capsys):
    progress = TrainingProgress([("02_train_progressive NC", tmp_path)], interval=3600, mode="lines")
    with progress:
        for _ in range(5):
            progress.poll()
    assert capsys.readouterr().out == ""
