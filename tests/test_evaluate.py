"""evaluate() end to end on two smoke runs, and notebook 04 headless with papermill."""
import json
import math
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
from smoke_batch import ROOT, refresh, trained_runs

from brainlib.config import CLASS_LABELS
from brainlib.eval.evaluate import EvalSizes, evaluate, load_features
from brainlib.eval.metrics import class_contrast
from brainlib.eval.report import format_table, load_report, metric_rows

RUNS = [f"{refresh.SMOKE_NAME}-AD", f"{refresh.SMOKE_NAME}-NC"]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """A private copy of the shared smoke runs (so our eval files do not leak into other tests)."""
    out = tmp_path_factory.mktemp("eval_runs")
    for run in RUNS:
        shutil.copytree(trained_runs() / run, out / run)
    return out


@pytest.fixture(scope="module")
def report_path(runs_root, tmp_path_factory) -> Path:
    return evaluate(RUNS, n=40, out_root=runs_root, quick=True, progress=False,
                    encoder_cache=tmp_path_factory.mktemp("encoders"))


def test_evaluate_writes_eval_json_into_each_run_with_floors(report_path, runs_root, capsys):
    assert report_path == runs_root / RUNS[0] / "eval.json"
    report = load_report(report_path)
    assert load_report(runs_root / RUNS[1]) == report  # identical copy in the NC run
    assert report["runs"] == RUNS and report["n_per_class"] == 40 and report["res"] == 16
    assert report["inception_fid"] is None or isinstance(report["inception_fid"], dict)
    assert report["inception_note"]
    assert report["encoder"]["name"] == "brainlib-slice-encoder" and 0 <= report["encoder"]["heldout_accuracy"] <= 1
    assert report["floor"]["optimistic"] is False and report["floor"]["trained_splits"] == ["train"]
    for c in ("AD", "NC"):
        m = report["per_class"][c]
        assert m["sizes"]["generated"] == 40 and m["sizes"]["compared"] == min(40, m["sizes"]["heldout"])
        for key in ("fid_encoder", "ms_ssim", "memorised_share_pixels"):
            assert set(m[key]) == {"generated", "floor", "ratio"} and m[key]["floor"] is not None
        assert m["fid_encoder"]["generated"] >= 0 and 0 <= m["ms_ssim"]["generated"] <= 1
        assert list(m["swd_x1e3"]["levels"]) == ["16"]
        ref_swd, spectrum = m["swd_reference_x1e3"], m["spectrum"]
        assert list(ref_swd["levels"]) == ["16"] and ref_swd["n_images"] == m["sizes"]["compared"]
        assert ref_swd["mean"]["floor"] > 0 and ref_swd["levels"]["16"]["generated"] > 0
        assert list(spectrum["bands"]) == ["16", "8", "4"] and spectrum["band_cycles"]["16"] == [4, 8]
        assert all(p["floor"] > 0 and p["generated"] > 0 for p in spectrum["bands"].values())
        assert {k: len(v) for k, v in spectrum["spectra"].items()} == {"train": 9, "generated": 9, "heldout": 9}
        assert m["sizes"]["compared"] < 8 and "c2st_accuracy" not in m  # C2ST needs 8 a side (test_quality_per_minute)
    for source in ("real", "synthetic", "real+synthetic"):
        assert 0 <= report["usefulness"][source]["balanced_accuracy"] <= 1
    contrast = report["class_contrast"]  # known answers: tests/test_metrics.py; here, its wiring
    assert math.isfinite(contrast["floor"]) and contrast["note"]
    assert contrast["ratio"] == (contrast["generated"] / contrast["floor"] if contrast["floor"] > 0 else None)
    for key in ("memorisation_AD", "memorisation_NC", "spectrum_AD", "spectrum_NC", "umap", "features"):
        figure = Path(report["figures"][key])
        assert figure.is_file() and figure.parent == report_path.parent / "eval"
    arrays = load_features(report)
    assert arrays["features"].shape == (len(arrays["labels"]), 128) and arrays["generated"].sum() == 80
    assert arrays["umap_points"].shape == (len(arrays["labels"]), 2)
    f, ad, gen = arrays["features"], arrays["labels"] == CLASS_LABELS["AD"], arrays["generated"]
    assert contrast["generated"] == pytest.approx(class_contrast(f[ad & gen], f[~ad & gen], f[ad & ~gen],
                                                                 f[~ad & ~gen]))
    assert not list(report_path.parent.glob(".*.tmp"))  # atomic writes leave no temp files


def test_metric_table_rows_and_reuse(report_path, runs_root, capsys):
    report = load_report(report_path)
    rows = metric_rows(report)
    names = {r["metric"] for r in rows}
    assert {"SWD x1e3 (avg)", "MS-SSIM (pairs)", "FID (encoder)", "KID (encoder)", "precision (encoder, k=3)",
            "recall (encoder, k=3)", "memorised share (pixels)", "AD-NC contrast (encoder)",
            "SWD x1e3, train-normalised (avg)", "SWD x1e3, train-normalised (16 px)",
            "spectrum |dlog10 P| (16 px band, 4-8 cyc)", "spectrum |dlog10 P| (4 px band, 1 cyc)"} <= names
    assert rows == report["table"]
    texture = [r for r in rows if "train-normalised" in r["metric"] or r["metric"].startswith("spectrum")]
    assert [r["metric"].split(" (")[-1] for r in texture if r["class"] == "AD"] == [
        "avg)", "16 px)", "16 px band, 4-8 cyc)", "8 px band, 2-3 cyc)", "4 px band, 1 cyc)"]  # finest first
    older = {**report, "per_class": {c: {k: v for k, v in m.items() if k not in ("swd_reference_x1e3", "spectrum")}
                                     for c, m in report["per_class"].items()}}
    assert metric_rows(older) == [r for r in rows if r not in texture]  # a report from before them still reads
    for r in rows:
        if r["ratio"] is not None:
            assert r["ratio"] == pytest.approx(r["generated"] / r["floor"])
    table = format_table(rows)
    assert table.splitlines()[0].split()[:5] == ["metric", "class", "generated", "floor", "ratio"]
    before = report_path.stat().st_mtime_ns
    again = evaluate(RUNS, n=40, out_root=runs_root, quick=True, progress=False, reuse=True)
    assert again == report_path and report_path.stat().st_mtime_ns == before  # same checkpoints: reused
    printed = capsys.readouterr().out
    assert "FID (encoder)" in printed and "(ratio ±" in printed  # the SWD's rows give their standard error


def test_truncated_evaluation_sits_beside_the_untruncated_one(report_path, runs_root, tmp_path):
    from brainlib.eval.evaluate import generate, load_runs
    before = report_path.read_bytes()
    path = evaluate([RUNS[1]], n=40, out_root=runs_root, quick=True, progress=False, truncation=0.5,
                    embed_method=None, encoder_cache=tmp_path / "enc")
    assert path == runs_root / RUNS[1] / "eval-psi0.5.json" and (runs_root / RUNS[1] / "eval-psi0.5").is_dir()
    assert report_path.read_bytes() == before  # the batch's eval.json is left as it was
    report = load_report(path)
    assert report["truncation_psi"] == 0.5 and report["fingerprint"]["psi"] == 0.5
    assert load_report(report_path)["truncation_psi"] == 1.0
    # the images are the sampler's at that psi; psi = 0 leaves only the noise inputs to tell them apart
    from brainlib.synthesis.sampling import sample_images
    loaded = load_runs([RUNS[1]], runs_root)
    G = loaded[0][1]
    assert torch.equal(generate(loaded, 16, 0, False, 0.5)["NC"],
                       sample_images(G, 16, seed=CLASS_LABELS["NC"], psi=0.5, res=16))
    spread = {psi: generate(loaded, 16, 0, False, psi)["NC"].std(dim=0).mean().item() for psi in (1.0, 0.0)}
    assert spread[0.0] < spread[1.0]
    with pytest.raises(ValueError, match="truncation"):
        evaluate([RUNS[1]], n=8, out_root=runs_root, quick=True, progress=False, truncation=1.5)


def test_another_seed_is_a_second_draw_beside_eval_json(report_path, runs_root, tmp_path):
    before = report_path.read_bytes()
    path = evaluate([RUNS[1]], n=40, out_root=runs_root, quick=True, progress=False, seed=3, embed_method=None,
                    encoder_cache=tmp_path / "enc")
    assert path == runs_root / RUNS[1] / "eval-seed3.json" and (runs_root / RUNS[1] / "eval-seed3").is_dir()
    assert report_path.read_bytes() == before
    report, first = load_report(path), load_report(report_path)
    assert report["fingerprint"]["seed"] == 3 and first["fingerprint"]["seed"] == 0
    swd = report["per_class"]["NC"]["swd_x1e3"]["mean"]
    assert swd["generated"] > 0 and swd["generated"] != first["per_class"]["NC"]["swd_x1e3"]["mean"]["generated"]
    with pytest.raises(ValueError, match="seed"):
        evaluate([RUNS[1]], n=8, out_root=runs_root, quick=True, progress=False, seed=-1)


def test_evaluate_refuses_a_class_twice(runs_root):
    with pytest.raises(ValueError, match="each class at most once"):
        evaluate([RUNS[0], RUNS[0]], n=8, out_root=runs_root, quick=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no-such-run"):
        evaluate(["no-such-run", RUNS[1]], n=8, out_root=runs_root, quick=True, progress=False)


@pytest.fixture(scope="module")
def one_class_path(runs_root, report_path, tmp_path_factory) -> Path:
    """The NC run alone, in its own copy (the pair's eval.json stays in the pair's folders)."""
    out = tmp_path_factory.mktemp("one_class_runs")
    shutil.copytree(runs_root / RUNS[1], out / RUNS[1])
    (out / RUNS[1] / "eval.json").unlink()
    return evaluate([RUNS[1]], n=40, out_root=out, quick=True, progress=False,
                    encoder_cache=tmp_path_factory.mktemp("encoders_one"))


def test_one_class_gets_every_per_class_figure_and_marks_the_pair_figures(one_class_path, report_path, capsys):
    report, pair = load_report(one_class_path), load_report(report_path)
    assert report["runs"] == [RUNS[1]] and report["classes"] == ["NC"] and list(report["per_class"]) == ["NC"]
    assert report["usefulness"] == {"not_applicable": "needs both AD and NC"}
    assert report["class_contrast"] == {"not_applicable": "needs both AD and NC"}
    assert report["encoder"]["classes"] == ["AD", "NC"]  # the dataset has both: the same encoder as the pair's
    alone, beside = report["per_class"]["NC"], pair["per_class"]["NC"]
    assert set(alone) == set(beside)  # every per-class figure, C2ST and memorisation included
    for key in ("fid_encoder", "kid_encoder", "ms_ssim", "precision_encoder", "recall_encoder",
                "memorised_share_pixels", "memorised_share_encoder"):
        assert alone[key]["generated"] == pytest.approx(beside[key]["generated"], rel=1e-5, abs=1e-8), key
        assert alone[key]["floor"] == pytest.approx(beside[key]["floor"], rel=1e-5, abs=1e-8), key
    assert alone["swd_x1e3"]["mean"]["generated"] == pytest.approx(beside["swd_x1e3"]["mean"]["generated"], rel=1e-6)
    assert Path(report["figures"]["memorisation_NC"]).is_file() and "memorisation_AD" not in report["figures"]
    arrays = load_features(report)
    assert set(arrays["labels"].tolist()) == {CLASS_LABELS["NC"]} and arrays["generated"].sum() == 40
    assert report["embedding"]["features"]["real_vs_generated"]["knn_accuracy"] is not None
    assert report["embedding"]["features"]["real_AD_vs_NC"] == {"knn_accuracy": None, "silhouette": None,
                                                                 "not_applicable": "needs both AD and NC"}

    rows = metric_rows(report)
    assert {r["class"] for r in rows} == {"NC", "both"}
    assert next(r for r in rows if r["metric"].startswith("5-NN acc real vs generated"))["class"] == "NC"
    marked = {r["metric"]: r for r in rows if r["better"].startswith("not applicable")}
    assert set(marked) == {"AD/NC classifier (synthetic vs real)", "AD-NC contrast (encoder)",
                           "5-NN acc AD vs NC generated (features)"}
    assert all(r["generated"] is None and "needs both AD and NC" in r["better"] for r in marked.values())
    assert "not applicable: needs both AD and NC" in format_table(rows)


def test_one_class_whose_dataset_lacks_the_other_class(tmp_path, capsys):
    """A user with normal controls only: the encoder learns from NC alone and says so."""
    from smoke_batch import tiny_data

    from brainlib.config import preset
    from brainlib.training.trainer import train
    data = tmp_path / "NC_only"
    shutil.copytree(tiny_data(), data, ignore=shutil.ignore_patterns("AD"))
    train(preset("smoke", class_name="NC", run="nc-only", out_root=str(tmp_path / "runs"), data_root=str(data)))
    report = load_report(evaluate(["nc-only"], n=16, out_root=tmp_path / "runs", quick=True, progress=False,
                                  encoder_cache=tmp_path / "encoders", embed_method=None))
    assert report["encoder"]["classes"] == ["NC"] and report["encoder"]["heldout_accuracy"] is None
    assert list(report["per_class"]) == ["NC"] and report["per_class"]["NC"]["fid_encoder"]["floor"] is not None
    assert report["class_contrast"] == report["usefulness"] == {"not_applicable": "needs both AD and NC"}
    assert "one class (NC)" in capsys.readouterr().out


def test_quick_sizes_are_smaller():
    q, full = EvalSizes.quick(), EvalSizes()
    assert q.ms_ssim_pairs < full.ms_ssim_pairs and q.swd_patches < full.swd_patches
    # ProGAN's 128 patches a level and 512 directions, here over 4 draws of patches and subsets
    assert (full.swd_patches, full.swd_directions * full.swd_repeats * full.swd_draws) == (128, 512)
    assert full.c2st_seeds == 3 and q.c2st_seeds == 1  # a full evaluation averages three classifiers


@pytest.mark.parametrize("runs", [RUNS, RUNS[1:]], ids=["pair", "one-class"])
def test_notebook_04_runs_headless_on_smoke_runs(runs, runs_root, tmp_path):
    import papermill
    out = tmp_path / "04_umap.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "04_umap.ipynb"), str(out), kernel_name="python3",
                               parameters=dict(runs=runs, n_per_class=40, out_root=str(runs_root)),
                               progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    checked = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    printed = "".join(o.get("text", "") for c in checked for o in c.outputs)
    assert "FID (encoder)" in printed and "SWD x1e3 (avg)" in printed
    assert len(list((runs_root / runs[0] / "eval").glob("*.png"))) >= 1 + len(runs)  # umap, memorisation per class
    assert load_report(runs_root / runs[0])["runs"] == runs


def test_committed_notebook_is_clean_and_parameterised():
    nb = nbformat.read(ROOT / "notebooks" / "04_umap.ipynb", as_version=4)
    assert "parameters" in nb.cells[0].metadata.get("tags", [])
    assert "n_per_class = 1000" in nb.cells[0].source and 'method = "umap"' in nb.cells[0].source
    assert "os.chdir(brainlib.config.project_root())" in nb.cells[1].source
    # which outputs may be committed is tests/test_notebook_hygiene.py's concern


def test_realism_table_reads_the_targets_from_each_runs_eval_json(report_path, runs_root, tmp_path):
    from benchmarks import realism_table
    # the pair's eval.json, as evaluate writes it into both runs (later tests here evaluate NC alone)
    for run in RUNS:
        (tmp_path / run).mkdir()
        shutil.copy(runs_root / run / "config.json", tmp_path / run)
        shutil.copy(runs_root / RUNS[0] / "eval.json", tmp_path / run)
    result = realism_table.main([str(tmp_path / run) for run in RUNS] + ["--preset", "smoke",
                                                                        "--out", str(tmp_path / "t.json")])
    report = load_report(tmp_path / RUNS[0] / "eval.json")
    assert report["runs"] == RUNS
    data = Path(json.loads((runs_root / RUNS[0] / "config.json").read_text())["data_root"])
    assert [(r["class"], r["design"], r["seed"]) for r in result["rows"]] == [("AD", "smoke", 0), ("NC", "smoke", 0)]
    for row in result["rows"]:
        m, t = report["per_class"][row["class"]], row["targets"]
        assert row["set"] == f"{data.parent.name}, {m['sizes']['train']}"
        assert t["finest"]["value"] == m["swd_reference_x1e3"]["levels"]["16"]["ratio"]
        assert t["finest"]["meets"] == (t["finest"]["value"] <= 2)
        assert t["spectrum"]["value"] == m["spectrum"]["bands"]["16"]["ratio"]  # 8 and 4 px: not judged
        assert t["recall"]["value"] == pytest.approx(m["recall_encoder"]["generated"] / m["recall_encoder"]["floor"])
        use = report["usefulness"]
        assert t["classifier"]["value"] == pytest.approx(use["synthetic"]["balanced_accuracy"]
                                                         / use["real"]["balanced_accuracy"])
        judged = [x["meets"] for x in t.values()]
        assert None not in judged and row["met"] == f"{sum(judged)} of 7"
    assert len(load_report(tmp_path / "t.json")["rows"]) == 2
