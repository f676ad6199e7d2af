import csv
import json

import numpy as np
import pytest
import tifffile
from helpers import disc_labels

from cellfuse.app.cli import main
from cellfuse.io import write_labels
from ensemble.suggest import CSV_COLUMNS, choose, measure, suggest, weighted_kmeans
from ensemble.suggest_report import report_section, teacher_outputs, write_outputs


def _image(labels: np.ndarray, kind: str) -> np.ndarray:
    fg = labels > 0
    if kind == "stained":  # purple cells on a light background: colour -> stained
        img = np.full((*labels.shape, 3), (230, 225, 240), np.uint8)
        img[fg] = (120, 40, 150)
        return img
    img = np.full(labels.shape, 10, np.uint8)  # grey, dark background -> fluorescence
    img[fg] = 200
    return img


def add_image(
    folder,
    iid,
    kind="fluorescence",
    ignore_cells=0,
    unconfirmed=0,
    conf=0.9,
    n=10,
    seed=0,
    shape=(96, 96),
):
    """One pseudo-labeled image: ``n`` true discs, the first ``ignore_cells`` of them in the
    ignore mask instead of the labels; ``unconfirmed`` extra clusters the vote did not keep;
    confident cells at confidence ``conf``; two teachers (and one view) in the cache."""
    truth = disc_labels(shape, n, seed=seed)
    ids = np.unique(truth[truth > 0])
    ignored = np.isin(truth, ids[:ignore_cells])
    fused = np.where(ignored, 0, truth)
    kept = np.unique(fused[fused > 0])
    fused = np.searchsorted(np.concatenate([[0], kept]), fused).astype(np.uint16)
    img_path = folder / "images" / f"{iid}.tif"
    img_path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(img_path, _image(truth, kind))
    write_labels(folder / f"{iid}_label.tiff", fused)
    tifffile.imwrite(folder / f"{iid}_ignore.tiff", ignored.astype(np.uint8))
    clusters = len(ids) + unconfirmed
    stats = {
        "clusters": clusters,
        "confident": len(kept),
        "uncertain": clusters - len(kept),
        "background": 0,
    }
    scores = [conf] * len(kept)
    (folder / f"{iid}_conf.json").write_text(
        json.dumps({"id": iid, "scores": scores, "stats": stats})
    )
    for teacher, lab in (("t_a", truth), ("t_b", fused), ("t_a@hflip", truth)):
        write_labels(folder / "cache" / teacher / f"{iid}_label.tiff", lab)
    entry = {"id": iid, "image": str(img_path), "status": "ok", "n_cells": len(kept)}
    with open(folder / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    return img_path


@pytest.fixture
def pool(tmp_path):
    folder = tmp_path / "pseudo"
    folder.mkdir()
    # fluorescence images, uncertain to different degrees; two stained ones, less uncertain
    for i, (ign, unc) in enumerate([(6, 4), (5, 4), (4, 3), (3, 3), (2, 2), (1, 1)]):
        add_image(folder, f"fluo{i}", ignore_cells=ign, unconfirmed=unc, seed=i)
    add_image(folder, "stain0", "stained", ignore_cells=1, unconfirmed=1, conf=0.8, seed=10)
    add_image(folder, "stain1", "stained", ignore_cells=0, unconfirmed=1, conf=0.8, seed=11)
    return folder


def test_score_terms_follow_the_formula(tmp_path):
    add_image(tmp_path, "a", ignore_cells=3, unconfirmed=2, conf=0.7, n=10, seed=3)
    it = measure(tmp_path, json.loads((tmp_path / "manifest.jsonl").read_text()))
    lab = tifffile.imread(tmp_path / "a_label.tiff")
    ign = tifffile.imread(tmp_path / "a_ignore.tiff") > 0
    share = ign.sum() / (ign.sum() + (lab > 0).sum())
    assert it.ignored == pytest.approx(share, abs=1e-4)
    assert it.unconfirmed == pytest.approx(5 / 12, abs=1e-4)  # 3 ignored + 2 extra of 12
    assert it.doubt == pytest.approx(0.3, abs=1e-4)
    assert it.score == pytest.approx((share + 5 / 12 + 0.3) / 3, abs=1e-3)
    assert it.modality == "fluorescence" and it.cells == 7 and it.clusters == 12


def test_an_image_with_no_confident_cell_is_maximally_doubtful(tmp_path):
    add_image(tmp_path, "none", ignore_cells=5, n=5, seed=2)
    it = measure(tmp_path, json.loads((tmp_path / "manifest.jsonl").read_text()))
    assert (it.ignored, it.unconfirmed, it.doubt, it.score) == (1.0, 1.0, 1.0, 1.0)
    assert "no confident cell" in suggest(tmp_path, 1).picks[0].reasons


def test_ranking_puts_the_biggest_ignore_share_first(tmp_path):
    for iid, ign in (("low", 1), ("high", 5), ("mid", 3)):
        add_image(tmp_path, iid, ignore_cells=ign, seed=1)  # same cells, only the mask differs
    res = suggest(tmp_path, 3, beta=1)
    assert [it.id for it in res.ranked] == ["high", "mid", "low"]
    assert res.ranked[0].ignored > res.ranked[1].ignored > res.ranked[2].ignored


def test_diversity_spreads_the_picks_over_modalities(pool):
    top = suggest(pool, 2, beta=1)  # plain top-2: the two most uncertain, both fluorescence
    assert [it.modality for it in top.picks] == ["fluorescence", "fluorescence"]
    assert [it.id for it in top.picks] == ["fluo0", "fluo1"]
    diverse = suggest(pool, 2, beta=4)
    assert {it.modality for it in diverse.picks} == {"fluorescence", "stained"}
    assert diverse.picks[0].score >= diverse.picks[1].score  # picks are listed by score
    assert [it.id for it in diverse.ranked[:2]] == [it.id for it in diverse.picks]


def test_candidates_restrict_the_pool(pool):
    res = suggest(pool, 2, ids=["stain0", "fluo5", "not_there"])
    assert sorted(it.id for it in res.ranked) == ["fluo5", "stain0"]


def test_csv_and_contact_sheet(pool, tmp_path):
    res = suggest(pool, 3)
    files = write_outputs(res, tmp_path / "out")
    rows = list(csv.DictReader(files["csv"].open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 8 and [int(r["rank"]) for r in rows] == list(range(1, 9))
    assert [r["picked"] for r in rows] == ["1"] * 3 + ["0"] * 5
    assert all(r["reasons"] for r in rows)
    rest = [float(r["score"]) for r in rows[3:]]
    assert rest == sorted(rest, reverse=True)
    png = files["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    from PIL import Image

    sheet = np.asarray(Image.open(files["png"]).convert("RGB"))
    assert sheet.shape[0] > 400 and sheet.shape[1] > 600  # 3 rows x 4 panels
    r, g, b = np.moveaxis(sheet.astype(int), 2, 0)
    assert ((r - g > 80) & (b - g > 80)).sum() > 100  # the undecided pixels, in magenta
    summary = json.loads(files["json"].read_text())
    assert [p["id"] for p in summary["picks"]] == [it.id for it in res.picks]


def test_contact_sheet_shows_each_teacher_once_without_its_views(pool):
    assert sorted(teacher_outputs(pool, "fluo0")) == ["t_a", "t_b"]


def test_weighted_kmeans_separates_blobs_deterministically():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (10, 2)), rng.normal(5, 0.1, (10, 2))])
    a1, _ = weighted_kmeans(x, np.ones(20), 2, seed=3)
    a2, _ = weighted_kmeans(x, np.ones(20), 2, seed=3)
    assert np.array_equal(a1, a2)
    assert len(set(a1[:10])) == 1 and len(set(a1[10:])) == 1 and a1[0] != a1[10]


def test_choose_returns_everything_when_the_pool_is_small(pool):
    res = suggest(pool, 20)
    assert len(res.picks) == 8 and all(it.picked for it in res.ranked)
    with pytest.raises(Exception, match="--n must be >= 1"):
        choose(res.ranked, 0)


def test_report_section(pool, tmp_path):
    assert report_section(tmp_path / "none", tmp_path / "rep") is None
    header, rows = report_section(pool, tmp_path / "rep", k=2)[0]
    assert header[:2] == ["rank", "image"] and len(rows) == 2
    assert (tmp_path / "rep" / "suggestions.png").is_file()
    assert (tmp_path / "rep" / "suggestions.csv").is_file()


def test_cli_suggest(pool, capsys):
    assert main(["suggest", "--pseudo", str(pool), "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert "ranked 8 images" in out
    assert (pool.parent / "suggest" / "suggestions.csv").is_file()


def test_cli_help_and_missing_folder(tmp_path, capsys):
    assert main(["suggest", "--help"]) == 0
    assert "--pseudo" in capsys.readouterr().out
    assert main(["suggest", "--pseudo", str(tmp_path / "nope")]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "nope: no such folder" in err[0]
    assert main(["suggest", "--work", str(tmp_path)]) == 2  # a folder without pseudo/
    assert "no such folder" in capsys.readouterr().err
    assert main(["suggest", "--n", "3"]) == 2  # neither --pseudo nor --work


def test_run_report_lists_the_suggestions(tmp_path):
    from cellfuse.app.evaluation import make_report
    from cellfuse.layout import list_images
    from cellfuse.stages import Run

    work, inp = tmp_path / "work", tmp_path / "input"
    (inp / "test" / "images").mkdir(parents=True)
    pseudo = work / "pseudo"
    pseudo.mkdir(parents=True)
    for i in range(4):
        add_image(pseudo, f"u{i}", ignore_cells=i, unconfirmed=i, seed=i)
    (inp / "unlabeled").mkdir()
    (pseudo / "images").rename(inp / "unlabeled" / "images")
    manifest = (pseudo / "manifest.jsonl").read_text()
    (pseudo / "manifest.jsonl").write_text(manifest.replace(str(pseudo), str(inp / "unlabeled")))
    unlabeled = list_images(inp / "unlabeled" / "images")
    page = make_report(Run(inp, work, "test", {"suggest_n": 2}), None, unlabeled).read_text()
    assert "Images to label next" in page and 'src="suggestions.png"' in page
    md = (work / "report" / "index.md").read_text()
    assert "| 1 | u3 | 0.340 |" in md and "| 2 | u2 |" in md  # the most uncertain first
    assert (work / "report" / "suggestions.csv").read_text().count("\n") == 5
