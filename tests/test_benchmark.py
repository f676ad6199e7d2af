"""tools/benchmark.py: the Med-MLE-bench view of a DSB-layout folder and the README table."""

import sys
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import benchmark  # noqa: E402

from cellfuse.errors import LayoutError  # noqa: E402


def _dsb(root):
    for sub in ("train/images", "train/labels", "val/images", "val/labels", "unlabeled/images"):
        (root / sub).mkdir(parents=True)
    (root / "val/images/a.png").write_bytes(b"x")
    return root


def test_view_maps_val_to_test_and_is_idempotent(tmp_path):
    data = _dsb(tmp_path / "dsb")
    view = benchmark.make_view(data, tmp_path / "view")
    assert (view / "test/images/a.png").read_bytes() == b"x"
    assert (view / "test_labels").resolve() == (data / "val/labels").resolve()
    assert (view / "unlabeled/images").resolve() == (data / "unlabeled/images").resolve()
    benchmark.make_view(data, tmp_path / "view")  # again: no error, same links
    assert sorted(p.name for p in (view / "test/images").iterdir()) == ["a.png"]


def test_view_needs_train_and_val(tmp_path):
    (tmp_path / "dsb/train").mkdir(parents=True)
    with pytest.raises(LayoutError, match="val"):
        benchmark.make_view(tmp_path / "dsb", tmp_path / "view")


def test_readme_table_is_rewritten_between_the_markers(tmp_path):
    res = {
        "date": "2026-11-24",
        "commit": "abc",
        "cpus": 2,
        "pipeline": {
            "val": {"student": {"f1_50": 0.85, "f1_75": 0.7, "s_per_mpx": 0.9}},
            "seconds": 10,
        },
        "ray": {
            "images": 299,
            "runs": {"workers_1": {"seconds": 100.0}, "workers_2": {"seconds": 55.0}},
            "speedup_wall": 1.818,
        },
        "ensemble": {
            "n_true": 100,
            "teachers": {"flowunet": {"f1@0.5": 0.85, "f1@0.75": 0.7}},
            "fused": {"f1@0.5": 0.8, "f1@0.75": 0.7, "precision@0.5": 0.95, "kept_fraction": 0.6},
            "fused_seen": {"f1@0.5": 0.9, "f1@0.75": 0.75, "true_cells_seen": 80},
        },
    }
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{benchmark.START}\nold table\n{benchmark.END}\noutro\n")
    benchmark.update_readme(res, readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| student (val) | 0.850 | 0.700 | 0.900 |" in text
    assert "1.818x" in text
    assert "| flowunet, val as unlabeled | 0.850 | 0.700 | | |" in text
    assert "| 0.800 | 0.700 | | precision 0.950, kept 0.600 |" in text
    assert "| 0.900 | 0.750 | | 80 of 100 true cells |" in text
    assert "as a predictor" not in text  # no fused_predict in this result
    benchmark.update_readme(res, readme)  # idempotent
    assert readme.read_text() == text
    res["part_commits"] = {"pipeline": "abc", "ensemble": "def"}
    assert "commit pipeline abc, ensemble def," in benchmark.readme_table(res)
    readme.write_text("no markers")
    with pytest.raises(LayoutError, match="markers"):
        benchmark.update_readme(res, readme)


def test_network_part_quantizes_and_times_every_model_and_tile(tmp_path):
    """tools/bench_network.py on a tiny exported student: both int8 models are written and
    load, and every (model, tile) row gets a positive time."""
    import bench_network
    import numpy as np
    import tifffile

    from student.export import export_onnx
    from student.model import StudentNet

    net = StudentNet(widths=(8, 16), blocks=(1, 1), full_ch=4).eval()
    onnx = tmp_path / "m.onnx"
    export_onnx(net, onnx, exporter="torchscript", size=64)
    rng = np.random.default_rng(0)
    calib = []
    for i in range(2):
        calib.append(tmp_path / f"c{i}.tif")
        tifffile.imwrite(calib[-1], rng.integers(0, 255, (80, 80), dtype=np.uint8))
    image = rng.integers(0, 255, (1100, 1100), dtype=np.uint8)
    res = bench_network.part_network(onnx, image, calib, tmp_path, threads=1, rounds=1)
    assert (tmp_path / "network" / "int8_qdq.onnx").is_file()
    assert set(res["s_per_mpx"]) == {"fp32", "int8_qdq", "int8_qop"}
    for row in res["s_per_mpx"].values():
        assert set(row) == {str(t) for t in bench_network.TILES}
        assert all(v > 0 for v in row.values())
    assert set(res["int8_vs_fp32_at_512"]) == {"int8_qdq", "int8_qop"}


def test_mosaic_part_scores_and_times_each_student(exported, tmp_path):
    """Two copies of one student on a small mosaic: both rounds of both are timed with their
    split, each is scored against truth and its own pasted per-image predictions, and the
    copies agree (same labels, same F1)."""
    import shutil

    import bench_mosaic
    from conftest import DEMO

    data = tmp_path / "dsb"
    (data / "val").mkdir(parents=True)
    (data / "val" / "images").symlink_to(DEMO / "test" / "images")
    (data / "val" / "labels").symlink_to(DEMO / "test_labels")
    onnx = []
    for d in ("a", "b"):  # the session's trained flow_xs student (conftest), twice
        shutil.copytree(Path(exported[1]).parent, tmp_path / d)
        onnx.append(str(tmp_path / d / Path(exported[1]).name))
    res = bench_mosaic.part_mosaic(data, tmp_path / "w", onnx, threads=1, size=1200, rounds=2)
    (a, ma), (b, mb) = res["models"].items()
    assert a != b and ma["time_vs_first"] == 1.0 and mb["time_vs_first"] > 0
    for m in (ma, mb):
        assert len(m["rounds"]) == 2
        assert set(m["best"]["seconds"]) >= {"read", "network", "postprocess", "other", "total"}
        assert 0.0 <= m["slide_f1"]["f1"] <= 1.0 and 0.0 <= m["pasted_f1"]["f1"] <= 1.0
        assert m["gap_f1"] == round(m["slide_f1"]["f1"] - m["pasted_f1"]["f1"], 4)
    assert ma["slide_f1"] == mb["slide_f1"] and ma["n_cells"] == mb["n_cells"] > 0
    assert ma["pasted_f1"] == mb["pasted_f1"]
    assert (tmp_path / "w" / "mosaic" / a / "ref" / "pasted" / "mosaic_label.tiff").is_file()
