"""The development sets by name, for benchmarks and experiments that judge a design on both:
"phantom" (the embedded MNI152-based set, the default) and "colin27" (real single-subject MRI
texture through simulated scanners; needs Debian's mricron-data). Each is built with its
defaults under data/ on first use."""
from __future__ import annotations

from pathlib import Path

DEVELOPMENT_SETS = ("phantom", "colin27")


def development_set(name: str = "phantom") -> Path:
    """The AD_NC root of the development set `name`, built on first use."""
    if name == "phantom":
        from brainlib.data.phantom import ensure_default_dataset
        return ensure_default_dataset()
    if name == "colin27":
        from brainlib.data.colin27 import ensure_colin27
        return ensure_colin27()
    raise ValueError(f"development set {name!r} is not one of {', '.join(DEVELOPMENT_SETS)}")
