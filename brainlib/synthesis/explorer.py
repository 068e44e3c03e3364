"""The explorer of 03_samples: one image of a trained run under sliders, for either family.

`LatentExplorer(G, cfg)` (a StyleGAN) holds the current settings (seed, psi, the top-k
principal directions in standard deviations, noise strength, a style-mixing
seed and crossover layer, the class of a conditional model and, for a conditional
model, the strength of the NC-to-AD direction (brainlib.synthesis.counterfactual)) and renders one
image from them. At default settings (directions 0, NC-to-AD 0, noise strength 1, no mixing) the
image is exactly `sampling.sample_images(G, 1, seed=seed, psi=psi)[0]`, i.e. image 0 of
`brainlib generate --seed <seed> --truncation <psi>`.

`DiffusionExplorer(sampler, cfg)` (a diffusion run, sampled by diffusion_sampling.DiffusionSampler)
offers what a diffusion model has: the seed, the DDIM steps and, for a conditional run, the class
and the guidance scale (classifier-free guidance needs a class: a one-class run has no slider for
it). There is no W space, so no truncation, directions, noise or mixing. Its image is image 0 of
`brainlib generate --seed <seed> --steps <steps> --guidance <guidance>`. One image costs `steps`
denoiser evaluations (two each with guidance): at the diffusion-demo's 25 steps, 64 px, on one
thread of a 2-core Xeon shared with other jobs (bf16), 0.45-0.6 s for a one-class run and
0.7-1.4 s for a conditional one; the sliders render on release, and a label shows each render's time.

Both: `render(**settings)` is plain computation, testable without a browser; `widget` builds the
ipywidgets view (imported lazily) whose controls call `update`, which re-renders and replaces the
PNG bytes of an `ipywidgets.Image`. `save()` writes the current image and its settings into the
run's `explorer/` folder. `explorer_for` picks the explorer that fits a loaded run.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from brainlib.atomic import atomic_write_bytes, atomic_write_json
from brainlib.config import RunConfig, check_seed
from brainlib.rundir import DEFAULT_OUT_ROOT, RunDir, run_dir_of
from brainlib.synthesis.counterfactual import class_direction
from brainlib.synthesis.diffusion_sampling import DiffusionSampler
from brainlib.synthesis.directions import Directions, compute_directions, directions_for_checkpoint
from brainlib.synthesis.sampling import (
    class_labels,
    image_seed,
    latents,
    mix_styles,
    model_classes,
    png_bytes,
    sample_images,
    styles,
    synthesize,
    to_uint8,
    trained_res,
)
from brainlib.training.checkpoints import resolve_checkpoint

STYLE = {"description_width": "110px"}


class Explorer:
    """What both explorers share: settings, update, the displayed PNG, save, the widget's frame.
    A subclass sets its model before calling this __init__, and defines render, _check and _controls."""

    def __init__(self, cfg: RunConfig, settings: dict[str, Any], *, res: int, display_size: int,
                 save_dir: str | Path | None):
        self.cfg, self.res, self.display_size = cfg, res, display_size
        self.save_dir = Path(save_dir) if save_dir is not None else RunDir(cfg.run_dir).explorer
        self.settings = settings
        self.seconds = 0.0  # the last render's time
        self.image = self._timed_render()
        self._widget = None
        self._image_widget = None
        self._render_time = None

    # ------------------------------------------------------------------
    # computation

    def render(self, **changes: Any) -> np.ndarray:
        """The uint8 [S, S] image for the current settings updated by `changes` (which are not kept)."""
        raise NotImplementedError

    def _check(self, s: dict) -> dict:
        """The merged settings, normalised; ValueError naming a bad one."""
        return s

    def _merged(self, changes: dict) -> dict:
        unknown = sorted(set(changes) - set(self.settings))
        if unknown:
            raise ValueError(f"unknown explorer settings {unknown}; known: {sorted(self.settings)}")
        return self._check({**self.settings, **changes})

    def _timed_render(self, **changes: Any) -> np.ndarray:
        start = time.perf_counter()
        image = self.render(**changes)
        self.seconds = time.perf_counter() - start
        return image

    def update(self, **changes: Any) -> np.ndarray:
        """Apply changes to the settings, re-render, and refresh the widget's image if shown."""
        s = self._merged(changes)
        self.image = self._timed_render(**s)
        self.settings = s
        if self._image_widget is not None:
            self._image_widget.value = self.display_png()
            self._render_time.value = self._time_text()
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

    def _controls(self, W) -> dict[str, Any]:
        """The widgets of the settings, by setting name; each change calls update(name=value)."""
        raise NotImplementedError

    def _more_controls(self, W) -> list:
        """Widgets below the controls that wire their own callbacks (none here)."""
        return []

    def _time_text(self) -> str:
        return f"one image: {self.seconds:.2f} s"

    def _build(self):
        import ipywidgets as W

        self._image_widget = W.Image(value=self.display_png(), format="png",
                                     width=self.display_size, height=self.display_size)
        self.controls: dict[str, Any] = self._controls(W)
        for name, c in self.controls.items():
            c.style, c.layout = STYLE, W.Layout(width="380px")
            c.observe(lambda change, name=name: self.update(**{name: change["new"]}), names="value")
        self._render_time = W.Label(self._time_text())
        self.save_button = W.Button(description="save image + settings", icon="save")
        self.status = W.Label("")
        self.save_button.on_click(lambda _: self.status.__setattr__("value", f"saved {self.save()}"))
        sliders = W.VBox(list(self.controls.values()) + self._more_controls(W) + [self._render_time])
        return W.VBox([W.HBox([self._image_widget, sliders]), W.HBox([self.save_button, self.status])])

    def show(self) -> None:
        """Display the widget and, for viewers without a live kernel (papermill, nbviewer), a static PNG."""
        from IPython.display import Image as StaticImage
        from IPython.display import display
        display(self.widget)
        display(StaticImage(data=self.display_png(), format="png"))


class LatentExplorer(Explorer):
    """Sliders over a StyleGAN's W: see the module docstring. `directions` defaults to k components of 5000 samples."""

    def __init__(self, G, cfg: RunConfig, *, directions: Directions | None = None, k: int = 6, seed: int = 0,
                 psi: float = 0.7, res: int | None = None, display_size: int = 384, save_dir: str | Path | None = None,
                 slider_range: float = 3.0):
        self.G = G
        res = res or trained_res(G)
        self.directions = directions if directions is not None else compute_directions(G, k=k, n_samples=5000)
        self.k = min(k, self.directions.k)
        self.num_ws = G.num_ws_at(res)
        self.classes = model_classes(G)
        self.ad_direction = None
        if len(self.classes) > 1:
            self.ad_direction = class_direction(G, n_samples=5000)
        self.slider_range = slider_range
        settings: dict[str, Any] = dict(
            seed=seed, psi=psi, directions=[0.0] * self.k, noise_strength=1.0,
            mix_seed=seed + 1, mix_layer=self.num_ws,  # mix_layer == num_ws: no mixing
            class_name=self.classes[0] if len(self.classes) > 1 else None,
            nc_to_ad=0.0)  # strength along the NC-to-AD direction (conditional models only)
        super().__init__(cfg, settings, res=res, display_size=display_size, save_dir=save_dir)

    def _w(self, seed: int, s: dict, label: torch.Tensor | None) -> torch.Tensor:
        return styles(self.G, latents(1, self.cfg.z_dim, seed=seed), label, psi=s["psi"])

    @torch.no_grad()
    def render(self, **changes: Any) -> np.ndarray:
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

    def _check(self, s: dict) -> dict:
        s["directions"] = [float(v) for v in s["directions"]]
        if len(s["directions"]) != self.k:
            raise ValueError(f"directions needs {self.k} values (got {len(s['directions'])})")
        if not 0 <= int(s["mix_layer"]) <= self.num_ws:
            raise ValueError(f"mix_layer must be between 0 and {self.num_ws} (got {s['mix_layer']})")
        return s

    def _controls(self, W) -> dict[str, Any]:
        s = self.settings
        controls = {
            "seed": W.IntSlider(s["seed"], 0, 9999, description="seed", continuous_update=False),
            "psi": W.FloatSlider(s["psi"], min=0.0, max=1.5, step=0.05, description="truncation ψ"),
            "noise_strength": W.FloatSlider(s["noise_strength"], min=0.0, max=2.0, step=0.1,
                                            description="noise strength"),
            "mix_seed": W.IntSlider(s["mix_seed"], 0, 9999, description="mix seed", continuous_update=False),
            "mix_layer": W.IntSlider(s["mix_layer"], 0, self.num_ws,
                                     description=f"mix from layer (={self.num_ws}: off)"),
        }
        if len(self.classes) > 1:
            controls["class_name"] = W.ToggleButtons(options=self.classes, value=s["class_name"],
                                                     description="class")
            controls["nc_to_ad"] = W.FloatSlider(s["nc_to_ad"], min=-1.0, max=2.0, step=0.1,
                                                 description="NC → AD ×")
        return controls

    def _more_controls(self, W) -> list:
        r = self.slider_range
        self.direction_sliders = [
            W.FloatSlider(v, min=-r, max=r, step=0.1,
                          description=f"PC{i} ({100 * float(self.directions.explained[i]):.0f}%) σ")
            for i, v in enumerate(self.settings["directions"])]
        for c in self.direction_sliders:
            c.style, c.layout = STYLE, W.Layout(width="380px")
            c.observe(lambda _: self.update(directions=[d.value for d in self.direction_sliders]), names="value")
        return [W.HTML("<b>principal directions of W</b>")] + self.direction_sliders


class DiffusionExplorer(Explorer):
    """A diffusion run's seed, DDIM steps and, for a conditional run, class and guidance scale:
    see the module docstring. The settings start at the run's sampler's (its config's)."""

    def __init__(self, sampler: DiffusionSampler, cfg: RunConfig, *, seed: int = 0, display_size: int = 384,
                 save_dir: str | Path | None = None, max_steps: int = 100, max_guidance: float = 5.0):
        self.sampler = sampler
        self.classes = model_classes(sampler)
        self.max_steps = min(cfg.diffusion_timesteps, max(max_steps, sampler.steps))
        self.max_guidance = max(max_guidance, sampler.guidance)
        settings: dict[str, Any] = dict(seed=seed, class_name=self.classes[0] if len(self.classes) > 1 else None,
                                        guidance=sampler.guidance, steps=sampler.steps)
        super().__init__(cfg, settings, res=trained_res(sampler), display_size=display_size, save_dir=save_dir)

    def render(self, **changes: Any) -> np.ndarray:
        s = self._merged(changes)
        sampler = DiffusionSampler(self.sampler.denoiser, self.cfg, steps=s["steps"], guidance=s["guidance"])
        return to_uint8(sample_images(sampler, 1, seed=s["seed"], class_name=s["class_name"]))[0]

    def _check(self, s: dict) -> dict:
        check_seed(s["seed"], "seed")
        if not 1 <= int(s["steps"]) <= self.cfg.diffusion_timesteps:
            raise ValueError(f"steps must be within [1, {self.cfg.diffusion_timesteps}] (got {s['steps']})")
        if not float(s["guidance"]) >= 0:
            raise ValueError(f"guidance must be 0 (none) or positive (got {s['guidance']})")
        class_labels(self.sampler, s["class_name"], 1)  # a class the model cannot make
        s["steps"], s["guidance"] = int(s["steps"]), float(s["guidance"])
        return s

    def _controls(self, W) -> dict[str, Any]:
        s = self.settings
        controls = {
            "seed": W.IntSlider(s["seed"], 0, 9999, description="seed", continuous_update=False),
            "steps": W.IntSlider(s["steps"], 1, self.max_steps, description="DDIM steps", continuous_update=False),
        }
        if len(self.classes) > 1:
            controls["class_name"] = W.ToggleButtons(options=self.classes, value=s["class_name"],
                                                     description="class")
            controls["guidance"] = W.FloatSlider(s["guidance"], min=0.0, max=self.max_guidance, step=0.25,
                                                 description="guidance", continuous_update=False)
        return controls

    def _time_text(self) -> str:
        return f"one image: {self.seconds:.2f} s ({self.settings['steps']} steps)"


def explorer_for(run: str, G, cfg: RunConfig, *, out_root: str | Path = DEFAULT_OUT_ROOT, seed: int = 0,
                 psi: float = 0.7, k: int = 6) -> LatentExplorer | DiffusionExplorer:
    """The explorer of a run loaded by sampling.load (G, cfg), saving into its explorer/ folder:
    a diffusion run's, or a StyleGAN's with k directions of W (computed from 10 000 w once and
    cached beside the checkpoint)."""
    save_dir = run_dir_of(run, out_root=out_root).explorer
    if cfg.diffusion:
        return DiffusionExplorer(G, cfg, seed=seed, save_dir=save_dir)
    directions, _ = directions_for_checkpoint(G, resolve_checkpoint(run, out_root), k=k, n_samples=10_000)
    return LatentExplorer(G, cfg, directions=directions, k=k, seed=seed, psi=psi, save_dir=save_dir)
