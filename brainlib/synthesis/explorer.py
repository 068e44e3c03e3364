"""The latent explorer of 03_samples: sliders over a generator's W space.

`LatentExplorer(G, cfg)` holds the current settings (seed, psi, the top-k
principal directions in standard deviations, noise strength, a style-mixing
seed and crossover layer, the class of a conditional model and, for a conditional
model, the strength of the NC-to-AD direction (brainlib.synthesis.counterfactual)) and renders one
image from them. `render(**settings)` is plain computation, testable without a
browser; `widget` builds the ipywidgets view (imported lazily) whose sliders
call `update`, which re-renders and replaces the PNG bytes of an
`ipywidgets.Image`. `save()` writes the current image and its settings into
the run's `explorer/` folder.

At default settings (directions 0, NC-to-AD 0, noise strength 1, no mixing) the image is
exactly `sampling.sample_images(G, 1, seed=seed, psi=psi)[0]`, i.e. image 0 of
`brainlib generate --seed <seed> --truncation <psi>`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from brainlib.atomic import atomic_write_bytes, atomic_write_json
from brainlib.config import RunConfig
from brainlib.rundir import RunDir
from brainlib.synthesis.counterfactual import class_direction
from brainlib.synthesis.directions import Directions, compute_directions
from brainlib.synthesis.sampling import (
    class_labels,
    image_seed,
    latents,
    mix_styles,
    model_classes,
    png_bytes,
    styles,
    synthesize,
    to_uint8,
    trained_res,
)


class LatentExplorer:
    """Sliders over W: see the module docstring. `directions` defaults to k components of 5000 samples."""

    def __init__(self, G, cfg: RunConfig, *, directions: Directions | None = None, k: int = 6, seed: int = 0,
                 psi: float = 0.7, res: int | None = None, display_size: int = 384, save_dir: str | Path | None = None,
                 slider_range: float = 3.0):
        self.G, self.cfg = G, cfg
        self.res = res or trained_res(G)
        self.directions = directions if directions is not None else compute_directions(G, k=k, n_samples=5000)
        self.k = min(k, self.directions.k)
        self.num_ws = G.num_ws_at(self.res)
        self.classes = model_classes(G)
        self.ad_direction = None
        if len(self.classes) > 1:
            self.ad_direction = class_direction(G, n_samples=5000)
        self.display_size = display_size
        self.slider_range = slider_range
        self.save_dir = Path(save_dir) if save_dir is not None else RunDir(cfg.run_dir).explorer
        self.settings: dict[str, Any] = dict(
            seed=seed, psi=psi, directions=[0.0] * self.k, noise_strength=1.0,
            mix_seed=seed + 1, mix_layer=self.num_ws,  # mix_layer == num_ws: no mixing
            class_name=self.classes[0] if len(self.classes) > 1 else None,
            nc_to_ad=0.0)  # strength along the NC-to-AD direction (conditional models only)
        self.image = self.render()
        self._widget = None
        self._image_widget = None

    # ------------------------------------------------------------------
    # computation

    def _w(self, seed: int, s: dict, label: torch.Tensor | None) -> torch.Tensor:
        return styles(self.G, latents(1, self.cfg.z_dim, seed=seed), label, psi=s["psi"])

    @torch.no_grad()
    def render(self, **changes: Any) -> np.ndarray:
        """The uint8 [S, S] image for the current settings updated by `changes` (which are not kept)."""
        s = self._merged(changes)
        label = class_labels(self.G, s["class_name"], 1)
        w = self._edit(self._w(s["seed"], s, label), s)
        ws = w
        if s["mix_layer"] < self.num_ws:
            w_mix = self._edit(self._w(s["mix_seed"], s, label), s)
            ws = mix_styles(w, w_mix, s["mix_layer"], self.num_ws)
        img = synthesize(self.G, ws, res=self.res, noise_mode="random", noise_strength=s["noise_strength"],
                         noise_seeds=[image_seed(s["seed"], 0)])
        return to_uint8(img.clamp(-1, 1))[0]

    def _edit(self, w: torch.Tensor, s: dict) -> torch.Tensor:
        """w moved along the principal directions and, if set, along NC-to-AD."""
        w = self.directions.shift(w, s["directions"])
        if s["nc_to_ad"]:
            if self.ad_direction is None:
                raise ValueError("nc_to_ad needs a conditional model (trained with --class both)")
            w = w + float(s["nc_to_ad"]) * self.ad_direction.to(w)
        return w

    def _merged(self, changes: dict) -> dict:
        unknown = sorted(set(changes) - set(self.settings))
        if unknown:
            raise ValueError(f"unknown explorer settings {unknown}; known: {sorted(self.settings)}")
        s = {**self.settings, **changes}
        s["directions"] = [float(v) for v in s["directions"]]
        if len(s["directions"]) != self.k:
            raise ValueError(f"directions needs {self.k} values (got {len(s['directions'])})")
        if not 0 <= int(s["mix_layer"]) <= self.num_ws:
            raise ValueError(f"mix_layer must be between 0 and {self.num_ws} (got {s['mix_layer']})")
        return s

    def update(self, **changes: Any) -> np.ndarray:
        """Apply changes to the settings, re-render, and refresh the widget's image if shown."""
        s = self._merged(changes)
        self.image = self.render(**s)
        self.settings = s
        if self._image_widget is not None:
            self._image_widget.value = self.display_png()
        return self.image

    def display_png(self) -> bytes:
        """The current image as PNG bytes, upscaled (nearest neighbour, so pixels stay honest) for display."""
        big = Image.fromarray(self.image, mode="L").resize((self.display_size,) * 2, Image.Resampling.NEAREST)
        return png_bytes(np.asarray(big))

    def save(self) -> Path:
        """Write the current image (at its trained size) and a JSON of its settings into save_dir.

        The file name hashes the settings, so saving twice the same view writes the same file."""
        meta = {"run": self.cfg.run, "res": self.res, **self.settings}
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:10]
        path = self.save_dir / f"seed{self.settings['seed']}-{digest}.png"
        atomic_write_bytes(path, png_bytes(self.image))
        atomic_write_json(path.with_suffix(".json"), meta)
        return path

    # ------------------------------------------------------------------
    # view

    @property
    def widget(self):
        """The ipywidgets view (built on first use)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):
        import ipywidgets as W

        s = self.settings
        self._image_widget = W.Image(value=self.display_png(), format="png",
                                     width=self.display_size, height=self.display_size)
        style = {"description_width": "110px"}
        layout = W.Layout(width="380px")
        self.controls: dict[str, Any] = {
            "seed": W.IntSlider(s["seed"], 0, 9999, description="seed", continuous_update=False),
            "psi": W.FloatSlider(s["psi"], min=0.0, max=1.5, step=0.05, description="truncation ψ"),
            "noise_strength": W.FloatSlider(s["noise_strength"], min=0.0, max=2.0, step=0.1,
                                            description="noise strength"),
            "mix_seed": W.IntSlider(s["mix_seed"], 0, 9999, description="mix seed", continuous_update=False),
            "mix_layer": W.IntSlider(s["mix_layer"], 0, self.num_ws,
                                     description=f"mix from layer (={self.num_ws}: off)"),
        }
        if len(self.classes) > 1:
            self.controls["class_name"] = W.ToggleButtons(options=self.classes, value=s["class_name"],
                                                          description="class")
            self.controls["nc_to_ad"] = W.FloatSlider(s["nc_to_ad"], min=-1.0, max=2.0, step=0.1,
                                                      description="NC → AD ×")
        r = self.slider_range
        self.direction_sliders = [
            W.FloatSlider(v, min=-r, max=r, step=0.1,
                          description=f"PC{i} ({100 * float(self.directions.explained[i]):.0f}%) σ")
            for i, v in enumerate(s["directions"])]
        for name, c in self.controls.items():
            c.style, c.layout = style, layout
            c.observe(lambda change, name=name: self.update(**{name: change["new"]}), names="value")
        for c in self.direction_sliders:
            c.style, c.layout = style, layout
            c.observe(lambda _: self.update(directions=[d.value for d in self.direction_sliders]), names="value")
        self.save_button = W.Button(description="save image + settings", icon="save")
        self.status = W.Label("")
        self.save_button.on_click(lambda _: self.status.__setattr__("value", f"saved {self.save()}"))
        sliders = W.VBox(list(self.controls.values()) + [W.HTML("<b>principal directions of W</b>")]
                         + self.direction_sliders)
        return W.VBox([W.HBox([self._image_widget, sliders]), W.HBox([self.save_button, self.status])])

    def show(self) -> None:
        """Display the widget and, for viewers without a live kernel (papermill, nbviewer), a static PNG."""
        from IPython.display import Image as StaticImage
        from IPython.display import display
        display(self.widget)
        display(StaticImage(data=self.display_png(), format="png"))
