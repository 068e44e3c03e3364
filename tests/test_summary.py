"""The batch report: headline figures judged against their floors, real beside generated,
enlarged grids, no raw key dumps, and a folder that works on its own once moved."""
import base64
import io
import json
import math
import re
import shutil
import tomllib
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image

from brainlib.batch.render import to_html
from brainlib.batch.report_page import MIN_GRID_SIDE, Block
from brainlib.batch.summary import write_summary
from brainlib.config import preset
from brainlib.eval.verdicts import BOTH_CLASSES_HEADLINE, PER_CLASS_HEADLINE, headline_rows, verdict

FLATTENED = re.compile(r"per_class|swd_x1e3|floor_std|written_to|fingerprint|\w+\[\d+\]"
                       r"|\w+\.\w+\.(generated|floor|ratio)")


def pair(gen, floor, **extra):
    ratio = gen / floor if gen is not None and floor and floor > 0 else None
    return {"generated": gen, "floor": floor, "ratio": ratio, **extra}


def class_report(swd_ratio: float) -> dict:
    return {"sizes": {"generated": 100, "compared": 40, "train": 160, "heldout": 40},
            "swd_x1e3": {"mean": pair(9.0 * swd_ratio, 9.0, ratio_se=0.12),
                         "levels": {"16": pair(9.0 * swd_ratio, 9.0)}, "n_images": 40},
            "ms_ssim": pair(0.3, 0.31), "fid_encoder": pair(50.0, 5.0),
            "kid_encoder": pair(0.004, -1e-5, generated_std=3e-4, floor_std=2e-5),
            "precision_encoder": pair(0.7, 0.92), "recall_encoder": pair(0.9, 0.93), "inception_fid": None,
            "c2st_accuracy": pair(0.99, 0.52, std=0.01, seeds=[0.99]),
            "c2st_accuracy_half_res": pair(0.55, 0.51, std=0.01, seeds=[0.55]),
            "memorisation": {}, "memorised_share_pixels": pair(0.0, 0.01), "memorised_share_encoder": pair(0.004, 0.01),
            "seconds": {"swd": 0.1}}


def eval_report(runs: list[str], classes=("AD", "NC")) -> dict:
    return {"runs": runs, "n_per_class": 100, "seed": 0, "res": 16, "quick": True,
            "floor": {"definition": "...", "optimistic": False, "note": ""},
            "encoder": {"name": "brainlib-slice-encoder", "heldout_accuracy": 0.9}, "inception_note": "no weights",
            "per_class": {c: class_report(1.2 if c == "AD" else 2.5) for c in classes},
            "usefulness": {"real": {"balanced_accuracy": 0.87, "auc": 0.9},
                           "synthetic": {"balanced_accuracy": 0.6, "auc": 0.7},
                           "real+synthetic": {"balanced_accuracy": 0.89, "auc": 0.93}},
            "class_contrast": pair(0.73, 1.03), "figures": {}, "seconds": {"total": 12.0},
            "fingerprint": {"version": 2}, "written_to": []}


def png(path: Path, side: int, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(path)
    return path


def fake_run(out_root: Path, run: str, class_name: str, preset_name: str = "smoke", **changes) -> Path:
    d = out_root / run
    cfg = preset(preset_name, run=run, class_name=class_name, out_root=str(out_root), **changes)
    d.mkdir(parents=True)
    cfg.save(d / "config.json")
    if cfg.family == "diffusion":  # a grid at each checkpoint
        png(d / "samples" / "16px-000000016img.png", 38, 1)
        png(d / "samples" / "16px-000000032img-final.png", 38, 2)
    else:  # a grid after each resolution step
        png(d / "samples" / "01-8px.png", 22, 1)
        png(d / "samples" / "02-16px.png", 38, 2)
    png(d / "samples" / "03_truncation.png", 40, 3)
    png(d / "plots" / "loss_per_batch.png", 120, 4)
    return d


def fake_batch(tmp_path: Path, *, classes=("AD", "NC"), conditional=False, evaluated=True) -> tuple[Path, list[Path]]:
    out = tmp_path / "outputs"
    names = ["b-both"] if conditional else [f"b-{c}" for c in classes]
    runs = [fake_run(out, n, "both" if conditional else n.split("-")[1]) for n in names]
    if evaluated:
        for c in ("AD", "NC"):
            png(runs[0] / "eval" / f"real_{c}.png", 74, 5)
            png(runs[0] / "eval" / f"generated_{c}.png", 74, 6)
            png(runs[0] / "eval" / f"memorisation_{c}.png", 90, 7)
        png(runs[0] / "eval" / "umap.png", 200, 8)
        for r in runs:
            (r / "eval.json").write_text(json.dumps(eval_report(names)))
    batch = out / "b"
    (batch / "notebooks").mkdir(parents=True)
    (batch / "notebooks" / "04_umap.ipynb").write_text("{}")
    png(batch / "plots" / "samples_per_class.png", 150, 9)
    return batch, runs


TWO_PRESETS = {"smoke": ["smoke-AD", "smoke-NC"], "diffusion-smoke": ["diffusion-smoke-AD", "diffusion-smoke-NC"]}


def fake_two_preset_batch(tmp_path: Path, floor_scale: float = 1.0) -> tuple[Path, list[Path]]:
    """A StyleGAN and a diffusion preset, each pair evaluated; the second evaluation's floors
    times floor_scale (1: measured on the same real slices as the first)."""
    out = tmp_path / "outputs"
    runs = []
    for k, (name, names) in enumerate(TWO_PRESETS.items()):
        group = [fake_run(out, n, n.rsplit("-", 1)[1], name) for n in names]
        for i, c in enumerate(("AD", "NC")):
            png(group[0] / "eval" / f"real_{c}.png", 74, 10 + i)
            png(group[0] / "eval" / f"generated_{c}.png", 74, 20 + 2 * k + i)
        report = eval_report(names)
        for m in report["per_class"].values():
            m["fid_encoder"] = pair(m["fid_encoder"]["generated"], m["fid_encoder"]["floor"] * floor_scale ** k)
        for r in group:
            (r / "eval.json").write_text(json.dumps(report))
        runs += group
    batch = out / "smoke+diffusion-smoke"
    batch.mkdir()
    return batch, runs


def write_two_presets(batch: Path, runs: list[Path], name_given: bool = False) -> Path:
    options = dict(preset="smoke", presets=list(TWO_PRESETS), runs=TWO_PRESETS, classes=["AD", "NC"],
                   conditional=False, data_root=None, name=batch.name, name_given=name_given,
                   out_root=str(batch.parent))
    return write_summary(batch, runs, [], total_seconds=60.0, batch=options)


def found_at(picture: np.ndarray, grid: np.ndarray) -> tuple[int, int] | None:
    """(x, y) where `grid` sits whole inside `picture`, else None."""
    first = grid[0].tobytes()
    for y in range(picture.shape[0] - grid.shape[0] + 1):
        x = picture[y].tobytes().find(first)
        if x >= 0 and np.array_equal(picture[y:y + grid.shape[0], x:x + grid.shape[1]], grid):
            return x, y
    return None


def write(batch: Path, runs: list[Path], **kw) -> Path:
    options = dict(preset="smoke", classes=["both"] if kw.pop("conditional", False) else [r.name[2:] for r in runs],
                   conditional=runs[0].name.endswith("both"), data_root=None, name=kw.pop("name", "b"),
                   out_root=str(batch.parent))
    timings = [{"label": "04_umap", "status": "done", "seconds": 3.0}]
    return write_summary(batch, runs, timings, total_seconds=60.0, batch=options, **kw)


def change_settings(run: Path, **changes) -> None:
    config = run / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **changes}))


class Elements(HTMLParser):
    """The start tags of a page as (tag, {attribute: value}), and its text by tag."""

    def __init__(self, page: str):
        super().__init__()
        self.tags, self.text, self._open = [], {}, []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag):
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag):]

    def handle_data(self, data):
        if self._open:
            self.text.setdefault(self._open[-1], []).append(data)


def embedded_images(page: str) -> list[Image.Image]:
    encoded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    return [Image.open(io.BytesIO(base64.b64decode(m))) for m in encoded]


def test_verdicts_follow_the_distance_to_the_floor():
    assert verdict("distance", pair(12.0, 9.0)) == "near"
    assert verdict("distance", pair(22.0, 9.0)) == "off"
    assert verdict("distance", pair(50.0, 5.0)) == "far"
    assert verdict("distance", pair(3e-5, -1e-5, floor_std=2e-5)) == "near"  # a floor at KID's noise level
    assert verdict("distance", pair(4e-3, -1e-5, floor_std=2e-5)) == "far"
    assert verdict("score", pair(0.95, 0.92)) == "near" and verdict("score", pair(0.7, 0.92)) == "off"
    assert verdict("score", pair(0.2, 0.92)) == "far"
    assert verdict("excess", pair(0.55, 0.52)) == "near" and verdict("excess", pair(0.99, 0.52)) == "far"
    assert verdict("share", pair(0.004, 0.01)) == "near" and verdict("share", pair(0.05, 0.01)) == "off"
    assert verdict("contrast", pair(0.73, 1.03)) == "off"
    assert verdict("distance", None) == verdict("score", pair(None, 0.9)) == "none"


def test_first_screen_holds_one_headline_row_per_figure_and_class_then_real_beside_generated(tmp_path):
    batch, runs = fake_batch(tmp_path)
    page = write(batch, runs).read_text()
    first = page[:page.index("</div></div>")]
    rows = re.findall(r"<tr class='v-(\w+)' data-metric='([^']+)' data-class='([^']+)'", first)
    expected = {(h.key, c) for h in PER_CLASS_HEADLINE for c in ("AD", "NC")} | \
               {(h.key, "AD+NC") for h in BOTH_CLASSES_HEADLINE}
    assert len(rows) == len(expected) and {(m, c) for _, m, c in rows} == expected
    judged = {(m, c): v for v, m, c in rows}
    assert judged[("swd", "AD")] == "near" and judged[("swd", "NC")] == "off"
    assert judged[("fid_encoder", "AD")] == "far" and judged[("c2st_accuracy", "NC")] == "far"
    assert judged[("c2st_accuracy_half_res", "AD")] == "near"  # the texture gives it away, the anatomy does not
    assert judged[("usefulness_real+synthetic", "AD+NC")] == "near"
    assert "real-vs-real floor" in first and "1.2× ±0.12" in first  # the SWD's ratio with its standard error
    assert first.count("±") == 2  # the SWD of each class; the other figures have none
    assert first.index("AD: real") < first.index("AD: generated") < first.index("NC: real")
    assert not FLATTENED.search(page), FLATTENED.search(page)


def test_grids_are_enlarged_by_a_whole_factor_without_smoothing(tmp_path):
    batch, runs = fake_batch(tmp_path)
    page = write(batch, runs).read_text()
    step = Image.open(io.BytesIO((batch / "summary_files" / "b-AD_01-8px.png").read_bytes()))
    original = Image.open(runs[0] / "samples" / "01-8px.png")
    assert step.width >= MIN_GRID_SIDE and step.width % original.width == 0
    factor = step.width // original.width
    assert np.array_equal(np.asarray(step), np.asarray(original).repeat(factor, 0).repeat(factor, 1))
    real = [im for im in embedded_images(page) if im.size == (74 * 4, 74 * 4)]
    assert len(real) == 4  # real and generated, AD and NC, each 296 px
    assert "image-rendering:pixelated" in page


def test_the_batch_folder_alone_still_shows_everything(tmp_path):
    batch, runs = fake_batch(tmp_path)
    write(batch, runs)
    moved = Path(shutil.copytree(batch, tmp_path / "elsewhere" / "b"))
    page = (moved / "summary.html").read_text()
    for src in re.findall(r"src='([^']+)'", page):
        assert src.startswith("data:image/png;base64,")
    for href in re.findall(r"href='([^']+)'", page):
        assert not href.startswith(("/", "..")) and (moved / href).exists(), href
    md = (moved / "summary.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert any(link.endswith("eval.json") for link in links)
    assert any(link.startswith("summary_files/") for link in links)
    for link in links:
        assert (moved / link).is_file(), link
    assert json.loads((moved / "eval.json").read_text())["runs"] == ["b-AD", "b-NC"]
    assert "| swd |" not in md and "| AD | SWD ×1e3 | 10.8 | 9 | 1.2× ±0.12 | ● near floor |" in md


def test_settings_show_what_differs_from_the_preset_and_the_commands_repeat_it(tmp_path):
    batch, runs = fake_batch(tmp_path)
    change_settings(runs[1], lr=0.0005)
    page = write(batch, runs).read_text()
    assert "b-AD: the smoke preset as it is" in page
    assert "<tr><td>lr</td><td class='n'>0.001</td><td class='n'>0.0005</td></tr>" in page
    assert "brainlib run --preset smoke --classes AD NC --name b --out-root " in page
    assert "brainlib train --preset smoke --class NC --run b-NC --out-root" in page and "--set lr=0.0005" in page
    assert "brainlib evaluate --model b-AD b-NC --n 100" in page
    assert "href='notebooks/04_umap.ipynb'" in page


def test_a_batch_without_an_evaluation_says_so_and_how_to_make_one(tmp_path):
    batch, runs = fake_batch(tmp_path, classes=("AD",), evaluated=False)
    (batch / "eval.json").write_text("{}")  # an earlier batch's copy must not stay linked
    page = write(batch, runs).read_text()
    assert "Not measured: no run of this batch holds an eval.json" in page
    assert "It needs an AD run and an NC run, or one conditional run" in page
    assert "<code>brainlib evaluate --model b-AD --n 1000</code>" in page
    assert "<tr class='v-" not in page and not (batch / "eval.json").exists()
    assert all(im.width > 0 for im in embedded_images(page))


def test_a_failed_batch_names_the_failure_above_what_it_made(tmp_path):
    batch, runs = fake_batch(tmp_path, evaluated=False)
    message = "04_umap failed in cell 3 (In [3]: 'path = ...') with ValueError: boom"
    page = write(batch, runs, failure=message).read_text()
    assert page.index("The batch stopped: 04_umap failed in cell 3") < page.index("How close to real")
    assert "the evaluation (04_umap) did not finish" in page
    assert "b-AD_02-16px.png" in (batch / "summary.md").read_text()


def test_a_conditional_batch_has_both_classes_from_one_run(tmp_path):
    batch, runs = fake_batch(tmp_path, conditional=True)
    page = write(batch, runs, conditional=True).read_text()
    assert "one conditional model (b-both)" in page
    assert "brainlib run --preset smoke --conditional --name b" in page
    assert "brainlib train --preset smoke --class both --run b-both" in page
    classes = {c for c in re.findall(r"data-class='([^']+)'", page)}
    assert classes == {"AD", "NC", "AD+NC"}


def test_headline_rows_mark_missing_figures_not_measured():
    report = eval_report(["b-AD", "b-NC"])
    del report["per_class"]["AD"]["c2st_accuracy"]
    del report["usefulness"]
    rows = {(r["metric"], r["cls"]): r["verdict"] for r in headline_rows(report, ["AD", "NC"])}
    assert rows[("c2st_accuracy", "AD")] == "none" and rows[("c2st_accuracy", "NC")] == "far"
    assert rows[("usefulness_synthetic", "AD+NC")] == "none"


def test_the_headline_says_when_a_floor_cannot_judge_and_how_many_images_each_class_compared():
    from brainlib.batch.report_page import PresetRuns, headline_blocks

    def notes(report: dict) -> list[str]:
        blocks = headline_blocks([PresetRuns("smoke", [], "StyleGAN", report)], ["AD", "NC"], None)
        return [b.text for b in blocks if b.kind == "note"]

    report = eval_report(["b-AD", "b-NC"])
    report["usefulness"]["real"]["balanced_accuracy"] = 0.48  # the real-trained classifier at chance
    report["per_class"]["NC"]["c2st_accuracy"] = pair(0.99, 0.84)  # a C2ST floor that tells real from real
    report["per_class"]["AD"]["sizes"]["compared"] = 45
    rows = {(r["metric"], r["cls"]): r for r in headline_rows(report, ["AD", "NC"])}
    for key in (("usefulness_synthetic", "AD+NC"), ("usefulness_real+synthetic", "AD+NC"), ("c2st_accuracy", "NC")):
        assert rows[key]["verdict"] == "unjudged" and rows[key]["why"]
    assert rows[("c2st_accuracy", "AD")]["verdict"] == "far" and rows[("c2st_accuracy", "AD")]["why"] is None
    unjudged, floor = notes(report)
    assert "AD 45, NC 40 images compared" in floor and "With 40 images of a class" in floor
    assert "scores 0.48 on held-out ones, near chance" in unjudged and "C2ST accuracy (NC)" in unjudged
    (floor,) = notes(eval_report(["b-AD", "b-NC"]))
    assert "40 images per class compared" in floor


def test_names_settings_file_names_and_failures_stay_text_in_the_page(tmp_path):
    batch, runs = fake_batch(tmp_path, evaluated=False)
    attack = "<script>alert('x')</script>"
    change_settings(runs[0], data_root=f"/data/{attack}")
    png(runs[0] / "plots" / "loss_x' onerror='alert(1).png", 120, 10)  # a caption inside an attribute
    page = write(batch, runs, name=attack, failure=f"04_umap failed: <img src=x onerror=alert(2)> `{attack}`")
    html = page.read_text()
    elements = Elements(html)
    assert {tag for tag, _ in elements.tags}.isdisjoint({"script", "iframe", "object"})
    assert not [(tag, a) for tag, attrs in elements.tags for a in attrs if a.startswith("on")]
    assert elements.text["title"] == [f"Batch {attack}: AD and NC, preset smoke"]
    assert f"/data/{attack}" in "".join(elements.text["td"]) and f"--name {attack}" in elements.text["pre"][0]
    assert elements.text["code"][0] == attack  # the failure's `code` span: escaped, then set as code
    assert "loss x' onerror='alert(1)" in [attrs.get("alt") for tag, attrs in elements.tags if tag == "img"]
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_an_unreadable_eval_json_renders_the_failure_and_not_measured_blocks(tmp_path):
    batch, runs = fake_batch(tmp_path, evaluated=False)
    for r in runs:
        (r / "eval.json").write_text('{"per_class": ')  # cut short while being written
    page = write(batch, runs, failure="04_umap failed in cell 7 with MemoryError").read_text()
    paragraphs = re.findall(r"<p class='(\w+)'>([^<]*)", page)
    assert paragraphs[0] == ("alert", "The batch stopped: 04_umap failed in cell 7 with MemoryError")
    assert paragraphs[1][0] == "note" and paragraphs[1][1].startswith(
        "Not measured: the evaluation (04_umap) did not finish. Evaluate with ")
    assert "<tr class='v-" not in page and "Every metric" not in page
    assert "href='eval.json'" not in page and not (batch / "eval.json").exists()


def test_the_template_renders_blocks_as_escaped_html():
    blocks = [Block("h1", "T <1>"), Block("p", "run `a<b` & go"),
              Block("table", head=("figure", "value"), rows=[("ratio", "1.2×"), ("name", "x1")],
                    row_attrs=[("v-near", {"metric": "m'1", "title": 'say "hi"'})]),
              Block("links", links=[("eval <json>", "eval.json?a=1&b=2")])]
    html = to_html("T <1>", blocks)
    assert "<title>T &lt;1&gt;</title>" in html and "<h1>T &lt;1&gt;</h1>" in html
    assert "<p>run <code>a&lt;b</code> &amp; go</p>" in html
    assert ("<tr class='v-near' data-metric='m&#39;1' title='say &#34;hi&#34;'>"
            "<td>ratio</td><td class='n'>1.2×</td></tr>") in html
    assert "<tr><td>name</td><td>x1</td></tr>" in html  # no row attributes given, not a number
    assert "<li><a href='eval.json?a=1&amp;b=2'>eval &lt;json&gt;</a></li>" in html
    assert html.endswith("</html>\n") and "td.n{text-align:right" in html


def test_the_template_ships_with_the_package():
    template = files("brainlib.batch") / "templates" / "summary.html.j2"
    assert template.is_file()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["brainlib.batch"]
    package = Path(str(files("brainlib.batch")))
    assert any(Path(str(template)) in package.glob(p) for p in patterns), patterns
    assert any(d.replace(" ", "").startswith("jinja2>=") for d in pyproject["project"]["dependencies"])


def test_the_headline_shows_each_texture_band_after_swd_finest_first_with_its_verdict():
    from brainlib.eval.verdicts import headline_rows

    def pair(gen: float, floor: float) -> dict:
        return {"generated": gen, "floor": floor, "ratio": gen / floor}

    report = {"per_class": {"AD": {
        "swd_x1e3": {"mean": pair(10.0, 9.0), "levels": {}},
        "swd_reference_x1e3": {"mean": pair(50.0, 20.0), "levels": {"64": pair(120.0, 10.0), "32": pair(25.0, 20.0)}},
        "spectrum": {"bands": {"64": pair(0.2, 0.01), "32": pair(0.015, 0.01), "8": pair(0.5, 0.01)},
                     "band_cycles": {"64": [16, 32], "32": [8, 16], "8": [2, 4]}}}}}
    rows = headline_rows(report, ["AD"])
    keys = [r["metric"] for r in rows]
    assert keys[:5] == ["swd", "swd_reference_64", "swd_reference_32", "spectrum_64", "spectrum_32"]
    assert "spectrum_8" not in keys  # octaves coarser than 16 px hold too few radii for a steady floor
    verdicts = {r["metric"]: r["verdict"] for r in rows}
    assert (verdicts["swd"], verdicts["swd_reference_64"], verdicts["swd_reference_32"]) == ("near", "far", "near")
    assert rows[3]["label"] == "spectrum, 64 px band (16–32 cycles)"
    assert [r["metric"] for r in headline_rows({"per_class": {"AD": {}}}, ["AD"])][:2] == ["swd", "fid_encoder"]


def test_two_presets_get_a_headline_table_each_beside_the_same_floors(tmp_path):
    batch, runs = fake_two_preset_batch(tmp_path)
    page = write_two_presets(batch, runs).read_text()
    md = (batch / "summary.md").read_text()
    assert md.startswith("# Batch smoke+diffusion-smoke: AD and NC, presets smoke and diffusion-smoke\n")
    assert "4 models, one per preset and class (smoke-AD, smoke-NC, diffusion-smoke-AD, diffusion-smoke-NC)" in md
    first = md[md.index("## How close to real"):md.index("## Real and generated slices")]
    tables = re.split(r"^### ", first, flags=re.M)[1:]
    assert [t.splitlines()[0] for t in tables] == ["smoke (StyleGAN)", "diffusion-smoke (diffusion)"]
    assert all("| AD | FID (encoder) | 50 | 5 | 10× | ✖ far off |" in t for t in tables)
    assert "The floors are the same in every table" in first
    first_screen = page[:page.index("</div></div>")]
    rows = re.findall(r"<tr class='v-\w+' data-metric='([^']+)' data-class='([^']+)'", first_screen)
    per_table = len(PER_CLASS_HEADLINE) * 2 + len(BOTH_CLASSES_HEADLINE)
    assert len(rows) == 2 * per_table and rows[:per_table] == rows[per_table:]
    assert json.loads((batch / "eval-diffusion-smoke.json").read_text())["runs"] == TWO_PRESETS["diffusion-smoke"]
    assert (batch / "eval-smoke.json").is_file() and not (batch / "eval.json").exists()
    for link in re.findall(r"\]\(([^)]+)\)", md):
        assert (batch / link).is_file(), link
    assert "diffusion-smoke-AD: the diffusion-smoke preset as it is" in md
    assert "![32 images (final): 16px](summary_files/diffusion-smoke-AD_16px-000000032img-final.png)" in md
    assert "brainlib run --preset smoke --preset diffusion-smoke --classes AD NC --out-root" in md  # no --name
    assert "brainlib train --preset diffusion-smoke --class NC --run diffusion-smoke-NC --out-root" in md
    assert "brainlib evaluate --model smoke-AD smoke-NC --n 100" in md
    assert "brainlib evaluate --model diffusion-smoke-AD diffusion-smoke-NC --n 100" in md
    write_two_presets(batch, runs, name_given=True)
    assert "--classes AD NC --name smoke+diffusion-smoke --out-root" in (batch / "summary.md").read_text()


def test_two_presets_show_real_stylegan_and_diffusion_slices_in_one_figure_a_row_per_class(tmp_path):
    batch, runs = fake_two_preset_batch(tmp_path)
    write_two_presets(batch, runs)
    figure = batch / "summary_files" / "real_and_generated_side_by_side.png"
    md = (batch / "summary.md").read_text()
    assert f"![AD, NC: real | smoke (StyleGAN) | diffusion-smoke (diffusion)](summary_files/{figure.name})" in md
    assert "AD_real.png" not in md  # one figure instead of a pair per class
    picture = np.asarray(Image.open(figure).convert("L"))
    factor = math.ceil(MIN_GRID_SIDE / 74)
    where = {}
    for column, run in (("real", runs[0]), ("smoke", runs[0]), ("diffusion", runs[2])):
        for c in ("AD", "NC"):
            kind = "real" if column == "real" else "generated"
            grid = np.asarray(Image.open(run / "eval" / f"{kind}_{c}.png").convert("L"))
            where[column, c] = found_at(picture, grid.repeat(factor, 0).repeat(factor, 1))
    assert None not in where.values(), where
    for c in ("AD", "NC"):  # columns: real, StyleGAN, diffusion
        assert where["real", c][0] < where["smoke", c][0] < where["diffusion", c][0]
        assert where["real", c][1] == where["smoke", c][1] == where["diffusion", c][1]
    assert where["real", "AD"][1] < where["real", "NC"][1]  # rows: AD above NC


def test_two_presets_whose_floors_differ_say_so(tmp_path):
    batch, runs = fake_two_preset_batch(tmp_path, floor_scale=1.5)
    write_two_presets(batch, runs)
    md = (batch / "summary.md").read_text()
    assert "The floors differ between the tables" in md and "same in every table" not in md
def test_a_runs_texture_probe_plot_is_in_its_training_section(tmp_path):
    batch, runs = fake_batch(tmp_path)
    png(runs[0] / "plots" / "texture.png", 120, 10)  # the AD run probed its texture, the NC run did not
    write(batch, runs)
    md = (batch / "summary.md").read_text()
    assert md.count("Texture during training") == 1 and (batch / "summary_files" / "b-AD_texture.png").is_file()
    assert md.index("Run b-AD: training") < md.index("Texture during training") < md.index("Run b-NC: training")
