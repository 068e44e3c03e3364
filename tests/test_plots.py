"""Loss plots: every title readable in the drawn figure (no text box over another); a diffusion
run's denoising loss; which plots each family's trainer writes."""
import itertools

import pytest
from PIL import Image

from brainlib.config import preset
from brainlib.plots import (
    LOSS_KEYS,
    _batch_rows,
    _panels,
    epoch_means,
    loss_figure,
    loss_plots,
    plot_denoising_loss,
    plot_losses_per_batch,
)


def metrics_rows(n_steps: int, batches: int = 6) -> list[dict]:
    rows = []
    for step in range(1, n_steps + 1):
        for b in range(batches):
            rows.append({"kind": "batch", "step": step, "res": 4 * 2 ** step, "epoch": b // 3,
                         "d_loss": 1.0 + 0.1 * b, "g_loss": -0.5 * b})
    return rows


def title_boxes(fig) -> dict[str, object]:
    """Window extents of the figure title and each panel's title, after a real draw."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = {"suptitle": fig._suptitle.get_window_extent(renderer)}
    for i, ax in enumerate(fig.axes):
        boxes[f"panel {i}"] = ax.title.get_window_extent(renderer)
        boxes[f"panel {i} axes"] = ax.get_window_extent(renderer)
    return boxes


@pytest.mark.parametrize("n_steps", [1, 2, 4, 5])
@pytest.mark.parametrize("kind", ["batch", "epoch"])
def test_no_title_overlaps_another_title_or_a_panel(n_steps, kind):
    import matplotlib.pyplot as plt
    rows = metrics_rows(n_steps)
    panels = _panels(_batch_rows(rows) if kind == "batch" else epoch_means(rows), None)
    fig = loss_figure(panels, LOSS_KEYS, kind=kind, point=lambda i, r: i, ylabel="loss")
    try:
        boxes = title_boxes(fig)
        texts = [k for k in boxes if not k.endswith("axes")]
        for a, b in itertools.combinations(texts, 2):
            assert not boxes[a].overlaps(boxes[b]), f"{a} overlaps {b}"
        for k in texts:  # a title sits above the plotting area, never on it
            for axes in (k2 for k2 in boxes if k2.endswith("axes")):
                assert not boxes[k].overlaps(boxes[axes]), f"{k} overlaps {axes}"
        assert fig._suptitle.get_text() == (f"Loss per {kind}: step 1" if n_steps == 1
                                            else f"Loss per {kind}: steps 1 to {n_steps}")
    finally:
        plt.close(fig)


def test_plot_losses_per_batch_writes_a_png(tmp_path):
    path = plot_losses_per_batch(metrics_rows(3), tmp_path / "plots" / "loss_per_batch.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 2 * im.height > 0


@pytest.mark.parametrize("batches", [0, 4, 300])
def test_plot_denoising_loss_writes_a_png_from_metrics_rows(tmp_path, batches):
    rows = [{"kind": "batch", "step": 1, "res": 16, "images_seen": 8 * (b + 1), "loss": 1.0 / (b + 1)}
            for b in range(batches)] + [{"kind": "resume", "batch": 2, "changed": {}}]
    path = plot_denoising_loss(rows, tmp_path / "plots" / "loss_per_batch.png", objective="v")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > im.height > 0


def test_loss_plots_are_the_ones_each_family_writes(tmp_path):
    stylegan, diffusion = (preset(p, run="r", out_root=str(tmp_path)) for p in ("smoke", "diffusion-smoke"))
    assert [p.name for p in loss_plots(stylegan)] == ["loss_per_batch.png", "loss_per_epoch.png"]
    assert loss_plots(diffusion) == [tmp_path / "r" / "plots" / "loss_per_batch.png"]
