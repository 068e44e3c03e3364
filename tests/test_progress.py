"""Progress output: tqdm bars where a person watches, plain lines in logs and pipes."""
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from brainlib import progress
from brainlib.progress import LineProgress, _Clock, choose_mode, progress_bar

ROOT = Path(__file__).resolve().parents[1]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def fake_time(monkeypatch):
    """time.monotonic under the test's control: now[0] seconds."""
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_mode_follows_the_stream_and_the_override(monkeypatch):
    monkeypatch.delenv("BRAINLIB_PROGRESS", raising=False)
    assert choose_mode(io.StringIO()) == "lines"
    assert choose_mode(FakeTerminal()) == "bar"
    monkeypatch.setenv("BRAINLIB_PROGRESS", "lines")
    assert choose_mode(FakeTerminal()) == "lines"
    monkeypatch.setenv("BRAINLIB_PROGRESS", "bar")
    assert choose_mode(io.StringIO()) == "bar"


def test_a_pipe_gets_a_line_progress_and_a_terminal_a_tqdm_bar(monkeypatch):
    monkeypatch.delenv("BRAINLIB_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress_bar(total=3), LineProgress)
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    from tqdm.auto import tqdm
    with progress_bar(total=3) as bar:
        assert isinstance(bar, tqdm)


def test_lines_come_at_a_steady_interval_across_bars_and_say_how_far(fake_time):
    out, clock = io.StringIO(), _Clock()
    step = {"images": 0}
    for epoch in range(3):  # a new bar per epoch, as the trainer makes them; 10 batches of 16, 4 s each
        bar = LineProgress(total=10, desc=f"step 2/4 16px epoch {epoch + 1}", images_per_update=16,
                           fraction_done=lambda: step["images"] / 480, job="step", interval=30,
                           stream=out, clock=clock)
        with bar:
            for _ in range(10):
                fake_time[0] += 4
                step["images"] += 16
                bar.update(1)
                bar.set_postfix({"d_loss": "0.512", "g_loss": "1.234"})
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert len(lines) == 4  # the first update, then every 30 s of 120 s
    assert lines[0] == "step 2/4 16px epoch 1: 16/160 images, 4.0 images/s, 3% of the step, 1m56s left"
    assert lines[1] == ("step 2/4 16px epoch 1: 144/160 images, 4.0 images/s, d_loss 0.512 g_loss 1.234, "
                        "30% of the step, 1m24s left")
    assert lines[-1].startswith("step 2/4 16px epoch 3: ") and "4.0 images/s" in lines[-1]


def test_a_new_epoch_bar_shows_the_latest_losses_of_its_job_only(fake_time):
    out, clock = io.StringIO(), _Clock()
    first = LineProgress(total=4, desc="epoch 1", job="step", interval=0, stream=out, clock=clock)
    first.update(1)
    first.set_postfix({"d_loss": "0.5"})
    second = LineProgress(total=4, desc="epoch 2", job="step", interval=0, stream=out, clock=clock)
    second.update(1)  # before this bar's own first set_postfix
    other = LineProgress(total=4, desc="sampling", interval=0, stream=out, clock=clock)
    other.update(1)
    lines = out.getvalue().splitlines()
    assert "d_loss" not in lines[0] and "d_loss 0.5" in lines[1] and "d_loss" not in lines[2]


def test_a_disabled_bar_prints_nothing_and_iteration_counts(fake_time):
    out = io.StringIO()
    items = list(LineProgress(range(5), desc="decoding", unit="file", interval=0, stream=out, clock=_Clock()))
    assert items == [0, 1, 2, 3, 4]
    assert out.getvalue().splitlines()[-1].startswith("decoding: 5/5 file, ")
    quiet = io.StringIO()
    bar = LineProgress(total=5, disable=True, interval=0, stream=quiet, clock=_Clock())
    bar.update(5)
    assert quiet.getvalue() == ""


def test_training_with_stderr_to_a_pipe_writes_plain_lines(tiny_phantom, tmp_path):
    """`brainlib train ... 2> log`: step, resolution, images, img/s, losses, time left; no carriage return."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "BRAINLIB_PROGRESS_SECONDS": "0"}
    env.pop("BRAINLIB_PROGRESS", None)
    proc = subprocess.run([sys.executable, "-m", "brainlib", "train", "--preset", "smoke", "--class", "AD",
                           "--data", str(tiny_phantom), "--out-root", str(tmp_path), "--run", "piped"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr and "\r" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("step ")]
    assert any(line.startswith("step 1/2 8px epoch 1: ") for line in lines)
    assert any(line.startswith("step 2/2 16px ") for line in lines)
    last = lines[-1]
    assert " images, " in last and " images/s" in last and "% of the step" in last and "left" in last
    assert any("d_loss " in line and "g_loss " in line for line in lines)
