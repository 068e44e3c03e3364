"""Embeddings and the numbers beside them: separable classes score high, mixed real/generated near 0.5."""
import numpy as np
import pytest

from brainlib.eval import embed


def clusters(n=60, d=16, gap=6.0, seed=0):
    """Real and generated points, AD and NC two well-separated clusters; generated drawn like real."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([1, 0, 1, 0], n)
    generated = np.repeat([False, False, True, True], n)
    feats = rng.normal(size=(4 * n, d))
    feats[labels == 1, :4] += gap  # a difference the 2-D picture must keep
    return feats, labels, generated


def test_separation_numbers_known_answers():
    feats, labels, generated = clusters()
    nums = embed.separation_numbers(feats, labels, generated)
    assert nums["generated_AD_vs_NC"]["knn_accuracy"] > 0.95 and nums["real_AD_vs_NC"]["knn_accuracy"] > 0.95
    assert nums["real_AD_vs_NC"]["silhouette"] > 0.2
    assert 0.3 < nums["real_vs_generated"]["knn_accuracy"] < 0.7  # indistinguishable: about chance
    feats[generated, 1] += 20  # generated images off the real manifold
    far = embed.separation_numbers(feats, labels, generated)
    assert far["real_vs_generated"]["knn_accuracy"] > 0.95


def test_knn_accuracy_needs_enough_points_per_class():
    assert embed.knn_accuracy(np.zeros((6, 2)), np.array([0, 0, 0, 0, 0, 1])) is None
    assert embed.silhouette(np.zeros((4, 2)), np.zeros(4)) is None


def test_umap_and_tsne_reports_and_figure(tmp_path):
    feats, labels, generated = clusters(n=30)
    for method in ("umap", "tsne"):
        rep = embed.embedding_report(feats, labels, generated, method=method, seed=0)
        assert rep["points"].shape == (120, 2) and np.isfinite(rep["points"]).all()
        assert rep["embedding"]["real_AD_vs_NC"]["knn_accuracy"] > 0.9
        fig = embed.plot_embedding(rep, labels, generated, path=tmp_path / f"{method}.png")
        assert len(fig.axes) == 3 and "5-NN acc" in fig.axes[0].get_title()
        assert (tmp_path / f"{method}.png").read_bytes()[:4] == b"\x89PNG"
        rows = embed.numbers_table(rep)
        assert {r["space"] for r in rows} == {method, "features"} and len(rows) == 6
    again = embed.embedding_report(feats, labels, generated, method="umap", seed=0)
    assert np.allclose(again["points"], embed.embedding_report(feats, labels, generated, method="umap",
                                                               seed=0)["points"])
    with pytest.raises(ValueError, match="not one of umap, tsne"):
        embed.embed_2d(feats, "pca")
