"""JupyterLab in a real browser: run all cells of a notebook, wait for the widget, move
a slider of the explorer with the keyboard and check that the displayed image changed
(03_samples on a StyleGAN run: a direction of W; on a diffusion run: the DDIM steps).

Headless Debian Chromium (/usr/bin/chromium) driven by Playwright; nothing downloads a
browser. `make test` installs chromium when it is missing and it can (root or sudo);
otherwise these tests fail and say how to install it. Screenshots of the image before
and after the slider moved are kept in /tmp/brainlib_browser/<test>/ as evidence.
"""
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EVIDENCE = Path("/tmp/brainlib_browser")


def tiny_explorer_notebook(path: Path) -> Path:
    """An IntSlider driving an ipywidgets.Image, labelled like the StyleGAN explorer's first
    direction slider: the browser machinery's own check, independent of any model."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("size = 64")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import io\nimport ipywidgets as W\nimport numpy as np\nfrom PIL import Image\n"
        "def png(v):\n"
        "    x = (np.add.outer(np.arange(size), np.arange(size)) * (v + 1) % 256).astype('uint8')\n"
        "    buf = io.BytesIO(); Image.fromarray(x).save(buf, format='png'); return buf.getvalue()\n"
        "image = W.Image(value=png(0), format='png', width=256, height=256)\n"
        "slider = W.IntSlider(0, 0, 20, description='PC0 σ')\n"
        "slider.observe(lambda c: setattr(image, 'value', png(c['new'])), names='value')\n"
        "W.VBox([image, slider])")]
    nbformat.write(nb, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, token: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's Chromium at /usr/bin/chromium: run "
                    "`sudo apt-get update && sudo apt-get install -y chromium` (or `make test` as root, "
                    "which installs it); Playwright must not download a browser")
    return CHROMIUM


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> Path:
    """The folder JupyterLab serves: the tiny explorer notebook, and two copies of 03_samples,
    parameterised to read the StyleGAN smoke runs and a conditional diffusion smoke run (built
    once per test session)."""
    root = tmp_path_factory.mktemp("lab")
    tiny_explorer_notebook(root / "tiny_explorer.ipynb")
    source = ROOT / "notebooks" / "03_samples.ipynb"
    if source.is_file():
        from smoke_batch import DIFFUSION_RUN, refresh, trained_diffusion_run, trained_runs
        refresh.parameterised_copy(source, root / "03_samples.ipynb", dict(
            runs=[f"{refresh.SMOKE_NAME}-AD", f"{refresh.SMOKE_NAME}-NC"], out_root=str(trained_runs())))
        refresh.parameterised_copy(source, root / "03_samples_diffusion.ipynb", dict(
            runs=[DIFFUSION_RUN], out_root=str(trained_diffusion_run())))
    return root


@pytest.fixture(scope="module")
def lab(lab_root, tmp_path_factory):
    """A JupyterLab server on a free port with a random token, isolated from the
    user's Jupyter settings; stopped (this process only) after the module."""
    token = secrets.token_hex(16)
    port = _free_port()
    home = tmp_path_factory.mktemp("jupyter_home")
    settings = home / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    tracker = home / "lab-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"autoStartDefaultKernel": True}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "PYTHONPATH": str(ROOT)}
    log = home / "lab.log"
    jupyter = Path(sys.executable).parent / "jupyter"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(jupyter), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
                                 f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={lab_root}",
                                 "--ServerApp.open_browser=False", "--LabApp.news_url=None",
                                 "--LabApp.extension_manager=readonly"]
                                + (["--allow-root"] if os.geteuid() == 0 else []),
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(lab_root))
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for_server(url, token, proc, log)
        yield dict(url=url, token=token, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def run_all_and_move_slider(browser, lab, notebook: str, evidence: Path, *, slider_label: str = "PC0",
                            timeout_s: float = 240) -> tuple[bytes, bytes]:
    """Open `notebook` in JupyterLab, Run > Run All Cells, wait for the widget image,
    press ArrowRight five times on the slider whose label holds `slider_label`; return the
    image's screenshots before and after (also written to `evidence`)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    evidence.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    console = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    timeout = timeout_s * 1000
    try:
        # the lab restores notebooks an earlier test opened, hidden behind this one: look only in the
        # panel on show
        page.goto(f"{lab['url']}lab/tree/{notebook}?token={lab['token']}", timeout=60_000)
        panel = page.locator(".jp-NotebookPanel:visible").first
        panel.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                     ".jp-Toolbar-kernelStatus[data-status='idle']").first.wait_for(state="attached", timeout=60_000)
        select_kernel = page.get_by_role("dialog").get_by_role("button", name="Select", exact=True)
        try:  # JupyterLab may still ask which kernel to start; the notebook's own python3 is preselected
            select_kernel.click(timeout=3000)
        except PlaywrightTimeout:
            pass
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        image = panel.locator(".jp-OutputArea-output img.widget-image").first
        image.wait_for(state="visible", timeout=timeout)
        slider = panel.locator(".widget-slider").filter(has=page.locator(f"label:has-text('{slider_label}')")).first
        slider.wait_for(state="visible", timeout=timeout)
        image.scroll_into_view_if_needed()
        _wait_until_settled(page, image)
        before = image.screenshot(path=str(evidence / "before.png"))
        page.screenshot(path=str(evidence / "page_before.png"))
        handle = slider.locator(".noUi-handle").first
        handle.focus()
        for _ in range(5):
            handle.press("ArrowRight")
        readout = slider.locator(".widget-readout").first.inner_text()
        after = before
        deadline = time.monotonic() + 60
        while after == before and time.monotonic() < deadline:
            page.wait_for_timeout(500)
            after = image.screenshot()
        (evidence / "after.png").write_bytes(after)
        page.screenshot(path=str(evidence / "page_after.png"))
        (evidence / "readout.txt").write_text(readout + "\n")
        return before, after
    except Exception:
        page.screenshot(path=str(evidence / "page_on_failure.png"))
        (evidence / "console.log").write_text("\n".join(console))
        raise
    finally:
        page.close()


def _wait_until_settled(page, image, tries: int = 20) -> None:
    """Widgets may re-render once after the first paint; wait for two equal screenshots."""
    last = image.screenshot()
    for _ in range(tries):
        page.wait_for_timeout(300)
        now = image.screenshot()
        if now == last:
            return
        last = now


def _pixels(png: bytes):
    import io

    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)


def test_slider_changes_the_image_in_jupyterlab(browser, lab):
    """The machinery itself, on an IntSlider driving an ipywidgets.Image."""
    before, after = run_all_and_move_slider(browser, lab, "tiny_explorer.ipynb", EVIDENCE / "tiny_explorer",
                                            timeout_s=90)
    a, b = _pixels(before), _pixels(after)
    assert a.shape == b.shape and a.shape[0] >= 200  # the 256 px image, not an empty box
    assert (a != b).mean() > 0.05
    assert (EVIDENCE / "tiny_explorer" / "readout.txt").read_text().strip() == "5"


@pytest.mark.parametrize("notebook, slider_label, readout", [
    ("03_samples", "PC0", 0.5),  # StyleGAN smoke runs: the first direction of W, 0 -> 0.5 sigma
    ("03_samples_diffusion", "DDIM steps", 9),  # a conditional diffusion smoke run: 4 steps -> 9
])
def test_explorer_of_03_samples_responds_to_a_slider(browser, lab, lab_root, notebook, slider_label, readout):
    """The real 03_samples notebook on smoke runs of either family: moving a slider of its
    explorer changes the generated slice."""
    assert (lab_root / f"{notebook}.ipynb").is_file(), "notebooks/03_samples.ipynb is missing"
    before, after = run_all_and_move_slider(browser, lab, f"{notebook}.ipynb", EVIDENCE / notebook,
                                            slider_label=slider_label)
    a, b = _pixels(before), _pixels(after)
    assert a.shape == b.shape and a.std() > 1  # a slice, not a blank image
    assert (a != b).mean() > 0.01
    assert float((EVIDENCE / notebook / "readout.txt").read_text()) == pytest.approx(readout)


def test_batch_report_of_a_smoke_batch_in_chromium(browser):
    """summary.html opened from disk: every image loaded, one headline row per figure and
    class, real and generated slices on the first screen, no flattened eval.json key."""
    from smoke_batch import refresh, smoke_batch

    from brainlib.batch.report_page import MIN_GRID_SIDE
    from brainlib.eval.verdicts import BOTH_CLASSES_HEADLINE, PER_CLASS_HEADLINE, texture_pairs
    report = smoke_batch() / refresh.SMOKE_NAME / "summary.html"
    evidence = EVIDENCE / "summary"
    evidence.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(report.as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({alt: e.alt, done: e.complete, w: e.naturalWidth, "
                   "grid: e.classList.contains('grid')}))")
        assert len(images) >= 10
        assert all(im["done"] and im["w"] > 0 for im in images), [im for im in images if not im["w"]]
        judged = [im for im in images if im["alt"].startswith("step ") or im["alt"].endswith((": real", ": generated"))]
        assert len(judged) == 2 * 2 + 4  # two steps per smoke run; real and generated per class
        assert all(im["grid"] and im["w"] >= MIN_GRID_SIDE for im in judged), judged
        rows = page.eval_on_selector_all("tr[data-metric]", "els => els.map(e => [e.dataset.metric, e.dataset.class])")
        evaluation = json.loads((report.parent / "eval.json").read_text())
        textures = {c: [[key, c] for key, *_ in texture_pairs(evaluation, c)] for c in ("AD", "NC")}
        assert all(len(rows) >= 2 for rows in textures.values())  # at 16 px: one SWD band, one spectrum band
        expected = [row for c in ("AD", "NC") for h in PER_CLASS_HEADLINE
                    for row in [[h.key, c]] + (textures[c] if h.key == "swd" else [])] + \
                   [[h.key, "AD+NC"] for h in BOTH_CLASSES_HEADLINE]
        assert rows == expected
        for selector in ("tr[data-metric]", "img[alt='AD: real']", "img[alt='AD: generated']"):
            box = page.locator(selector).first.bounding_box()
            assert box is not None and box["y"] < 800, f"{selector} is not on the first screen: {box}"
        text = page.inner_text("body")
        flattened = re.search(r"per_class|swd_x1e3|floor_std|written_to|fingerprint|\w+\[\d+\]\.", text)
        assert flattened is None, flattened
        assert "How close to real are these images?" in text and "Reproduce this batch" in text
        page.screenshot(path=str(evidence / "first_screen.png"))
    finally:
        page.close()
