"""UMAP and t-SNE pictures of real and generated images, with numbers beside them.

A 2-D embedding is a picture, not a measurement: clusters can appear or vanish
with the method's settings. So every picture here comes with numbers computed
both in the 2-D embedding and in the feature space it was made from:

- k-NN accuracy (5-NN, 5-fold stratified cross-validation) of AD vs NC among
  generated images and among real images (higher: the classes separate);
- k-NN accuracy of real vs generated, on equal-sized sets (0.5 is ideal:
  generated images sit among real ones);
- silhouette scores of the same labellings (-1..1, higher: tighter clusters).

One embedding is fitted to all points (real and generated, AD and NC) so the
panels share coordinates. Colours follow the original figure: red AD, purple NC;
circles are real images, crosses generated ones. umap-learn is imported lazily.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from brainlib.atomic import atomic_write
from brainlib.config import CLASS_LABELS
from brainlib.plots import CLASS_COLOURS, pyplot

CLASS_NAMES = {label: name for name, label in CLASS_LABELS.items()}
METHODS = ("umap", "tsne")


def embed_2d(features: np.ndarray, method: str = "umap", *, seed: int = 0) -> np.ndarray:
    """[N, D] -> [N, 2] with UMAP (n_neighbors 15, min_dist 0.1) or t-SNE (perplexity 30), fixed seed."""
    x = np.asarray(features, dtype=np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)  # feature dimensions on one scale
    if method == "umap":
        import umap
        return umap.UMAP(n_neighbors=min(15, len(x) - 1), min_dist=0.1, random_state=seed,
                         n_jobs=1).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE
        return TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed,
                    n_jobs=1).fit_transform(x)
    raise ValueError(f"embedding method {method!r} is not one of {', '.join(METHODS)}")


def knn_accuracy(points: np.ndarray, labels: np.ndarray, *, k: int = 5, folds: int = 5, seed: int = 0) -> float | None:
    """Cross-validated k-NN accuracy; None when a class has fewer members than folds."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels)
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) < 2 or counts.min() < folds:
        return None
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(KNeighborsClassifier(n_neighbors=k), points, labels, cv=cv).mean())


def silhouette(points: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return None
    return float(silhouette_score(points, labels))


def _balanced(mask_a: np.ndarray, mask_b: np.ndarray, seed: int) -> np.ndarray:
    """Indices of equally many points from two groups (the larger is subsampled)."""
    rng = np.random.default_rng(seed)
    a, b = np.flatnonzero(mask_a), np.flatnonzero(mask_b)
    n = min(len(a), len(b))
    return np.sort(np.concatenate([rng.choice(a, n, replace=False), rng.choice(b, n, replace=False)]))


def separation_numbers(points: np.ndarray, labels: np.ndarray, generated: np.ndarray, *, seed: int = 0) -> dict:
    """k-NN accuracy and silhouette for: AD vs NC in generated, AD vs NC in real,
    real vs generated (balanced). `points` may be an embedding or the features."""
    generated = np.asarray(generated, bool)
    labels = np.asarray(labels)
    out = {}
    for name, mask in (("generated_AD_vs_NC", generated), ("real_AD_vs_NC", ~generated)):
        out[name] = {"knn_accuracy": knn_accuracy(points[mask], labels[mask], seed=seed),
                     "silhouette": silhouette(points[mask], labels[mask])}
    if generated.any() and (~generated).any():
        idx = _balanced(generated, ~generated, seed)
        out["real_vs_generated"] = {"knn_accuracy": knn_accuracy(points[idx], generated[idx].astype(int), seed=seed),
                                    "silhouette": silhouette(points[idx], generated[idx].astype(int))}
    return out


def embedding_report(features: np.ndarray, labels: np.ndarray, generated: np.ndarray, *,
                     method: str = "umap", seed: int = 0) -> dict:
    """Fit one embedding to all points; numbers in the embedding and in the features.

    Returns {"method", "points" [N,2], "embedding": numbers, "features": numbers}.
    """
    points = embed_2d(features, method, seed=seed)
    return {"method": method, "points": points,
            "embedding": separation_numbers(points, labels, generated, seed=seed),
            "features": separation_numbers(np.asarray(features), labels, generated, seed=seed)}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def plot_embedding(report: dict, labels: np.ndarray, generated: np.ndarray, *, path: str | Path | None = None,
                   title: str = ""):
    """Three panels sharing coordinates: generated AD vs NC, real AD vs NC, real vs generated;
    each titled with its k-NN accuracy and silhouette (in the embedding). Returns the figure."""
    plt = pyplot(headless=path is not None)

    pts, labels, generated = report["points"], np.asarray(labels), np.asarray(generated, bool)
    nums = report["embedding"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    panels = [("generated: AD vs NC", "generated_AD_vs_NC", generated),
              ("real: AD vs NC (ground truth)", "real_AD_vs_NC", ~generated)]
    for ax, (name, key, mask) in zip(axes[:2], panels, strict=True):
        for c in (0, 1):
            m = mask & (labels == c)
            ax.scatter(pts[m, 0], pts[m, 1], s=5, c=CLASS_COLOURS[CLASS_NAMES[c]],
                       marker="x" if key.startswith("gen") else "o", alpha=0.6, linewidths=0.6,
                       label=f"{CLASS_NAMES[c]} ({m.sum()})")
        n = nums.get(key, {})
        ax.set_title(f"{name}\n5-NN acc {_fmt(n.get('knn_accuracy'))}, "
                     f"silhouette {_fmt(n.get('silhouette'))}", fontsize=9)
    ax = axes[2]
    for c in (0, 1):
        for is_gen, marker, alpha in ((False, "o", 0.35), (True, "x", 0.6)):
            m = (labels == c) & (generated == is_gen)
            ax.scatter(pts[m, 0], pts[m, 1], s=5, c=CLASS_COLOURS[CLASS_NAMES[c]], marker=marker, alpha=alpha,
                       linewidths=0.6, label=f"{CLASS_NAMES[c]} {'generated' if is_gen else 'real'}")
    n = nums.get("real_vs_generated", {})
    ax.set_title(f"real (o) vs generated (x)\n5-NN acc {_fmt(n.get('knn_accuracy'))} (0.5 ideal), "
                 f"silhouette {_fmt(n.get('silhouette'))}", fontsize=9)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.suptitle(title or f"{report['method'].upper()} of encoder features", fontsize=10)
    fig.tight_layout()
    if path is not None:
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return fig


def numbers_table(report: dict) -> list[dict]:
    """Rows (comparison, space, knn_accuracy, silhouette) for printing beside the picture."""
    rows = []
    for space in ("embedding", "features"):
        for key, nums in report[space].items():
            rows.append({"comparison": key, "space": space if space == "features" else report["method"],
                         "knn_accuracy": nums["knn_accuracy"], "silhouette": nums["silhouette"]})
    return rows
