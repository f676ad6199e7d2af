"""Cell census by window (cellfuse.census): regionprops values, each cell once and whole
whatever the windows, and the outputs read back as users read them (pandas, shapely)."""

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from helpers import disc_labels
from shapely.geometry import Point, shape
from skimage.measure import regionprops

from cellfuse.census import BASE_COLUMNS, export_cells, iter_cells, measure, outline, slide_outputs
from cellfuse.io import write_labels
from cellfuse.pyramid import PyramidReader, array_bands, write_label_pyramid


def _scene(seed=0):
    """Discs (ids beyond uint16, not sequential), a long bent cell crossing many windows,
    a cell with a hole, and an RGB image whose intensities differ per cell."""
    lab = disc_labels((300, 400), 110, 3, 12, seed=seed).astype(np.uint32) * 7 + 70_000
    lab[lab == 70_000] = 0
    shapes = np.zeros(lab.shape, np.uint32)
    shapes[10:13, 20:380] = 5  # horizontal bar, then down the right side: an L 3 px thick
    shapes[10:290, 377:380] = 5
    shapes[200:230, 20:50] = 9
    shapes[210:220, 30:40] = 0  # a hole
    lab[np.isin(lab, lab[shapes > 0])] = 0  # discs under them go (cells stay connected)
    lab[shapes > 0] = shapes[shapes > 0]
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (300, 400, 3)).astype(np.uint8)
    return lab, img


def test_measure_matches_regionprops():
    lab, img = _scene()
    ids, cols, boxes, first = measure(lab, img)
    assert sorted(ids.tolist()) == sorted(np.unique(lab)[1:].tolist())
    flat = lab.ravel()
    for r in regionprops(lab, intensity_image=img):
        k = ids.tolist().index(r.label)
        assert cols["area"][k] == r.area
        np.testing.assert_allclose((cols["centroid_y"][k], cols["centroid_x"][k]), r.centroid)
        np.testing.assert_allclose(cols["perimeter"][k], r.perimeter, rtol=1e-12)
        np.testing.assert_allclose(cols["eccentricity"][k], r.eccentricity, atol=1e-4)
        assert tuple(int(cols[c][k]) for c in BASE_COLUMNS[6:]) == r.bbox
        np.testing.assert_allclose(
            [cols[f"mean_intensity_{c}"][k] for c in range(3)], r.intensity_mean
        )
        assert (boxes[k][0].start, boxes[k][1].start) == r.bbox[:2]
        assert first[k] == np.flatnonzero(flat == r.label)[0]  # first pixel in raster order


@pytest.mark.parametrize("window,margin", [(37, 5), (64, 16), (150, 40)])
def test_windows_measure_each_cell_once_and_whole(window, margin):
    lab, img = _scene()
    whole = {
        r["id"]: r
        for r in iter_cells(
            lambda w: lab[w], lab.shape, read_image=lambda w: img[w], window=1000, polygons=True
        )
    }
    assert len(whole) == np.unique(lab).size - 1
    recs = list(
        iter_cells(
            lambda w: lab[w],
            lab.shape,
            read_image=lambda w: img[w],
            window=window,
            margin=margin,
            polygons=True,
        )
    )
    assert sorted(r["id"] for r in recs) == sorted(whole)  # every cell exactly once
    for r in recs:
        ref = whole[r["id"]]
        assert r["polygon"] == ref["polygon"] and r.keys() == ref.keys()
        for k in r:
            if k != "polygon":
                np.testing.assert_allclose(r[k], ref[k], rtol=1e-12, atol=1e-9, err_msg=k)


def test_outline_is_a_valid_ccw_ring_on_pixel_edges():
    yy, xx = np.mgrid[:21, :21]
    disc = (yy - 10) ** 2 + (xx - 10) ** 2 <= 81
    ring = outline(disc, origin=(100, 200))
    poly = shape({"type": "Polygon", "coordinates": [ring]})
    assert ring[0] == ring[-1] and poly.is_valid and poly.exterior.is_ccw
    assert abs(poly.area - disc.sum()) < 0.02 * disc.sum()
    assert poly.bounds == (201.0, 101.0, 220.0, 120.0)  # pixels 1..19: corners 1..20
    square = np.ones((4, 6), bool)  # straight runs collapse to their corners (+ cut corners)
    assert len(outline(square)) == 9 and outline(np.zeros((3, 3), bool)) is None


def test_export_csv_and_geojson_read_back(tmp_path):
    lab, img = _scene(seed=1)
    lab_path, img_path = tmp_path / "cells.ome.tif", tmp_path / "slide.tif"
    write_label_pyramid(lab_path, array_bands(lab, 128), lab.shape, tile=128)
    tifffile.imwrite(img_path, img, tile=(128, 128), photometric="rgb")
    csv_path, gj_path = tmp_path / "out" / "cells.csv", tmp_path / "out" / "cells.geojson"
    info = export_cells(
        lab_path, image=img_path, csv_path=csv_path, geojson_path=gj_path, window=100, margin=20
    )
    ids = np.unique(lab)[1:]
    assert info["n_cells"] == ids.size

    table = pd.read_csv(csv_path)
    assert list(table.columns) == BASE_COLUMNS + [
        "mean_intensity_0",
        "mean_intensity_1",
        "mean_intensity_2",
    ]
    assert sorted(table["id"]) == ids.tolist()
    counts = np.bincount(np.searchsorted(ids, lab[lab > 0]), minlength=ids.size)
    assert np.array_equal(table.set_index("id").loc[ids, "area"].to_numpy(), counts)
    row = table.set_index("id").loc[9]
    assert (row.bbox_y0, row.bbox_x0, row.bbox_y1, row.bbox_x1) == (200, 20, 230, 50)
    np.testing.assert_allclose(row.mean_intensity_1, img[..., 1][lab == 9].mean())

    fc = json.loads(gj_path.read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == ids.size
    seen = set()
    for f in fc["features"]:
        assert f["type"] == "Feature" and isinstance(f["id"], str)
        props = f["properties"]
        assert props["objectType"] == "detection" and props["classification"]["name"] == "Nucleus"
        assert set(props["measurements"]) >= {"area", "perimeter", "centroid_x", "eccentricity"}
        geom = shape(f["geometry"])
        assert f["geometry"]["type"] == "Polygon" and geom.is_valid and not geom.is_empty
        m = props["measurements"]
        if props["id"] > 70_000:  # discs: the polygon holds the centroid (x, y at pixel centres)
            assert geom.contains(Point(m["centroid_x"] + 0.5, m["centroid_y"] + 0.5))
            assert abs(geom.area - m["area"]) <= 0.1 * m["area"] + 2
        seen.add(props["id"])
    assert seen == set(ids.tolist())


def test_export_empty_labels_writes_headers(tmp_path):
    path = tmp_path / "empty.ome.tif"
    write_label_pyramid(path, array_bands(np.zeros((50, 60), np.uint32)), (50, 60))
    info = export_cells(path, csv_path=tmp_path / "c.csv", geojson_path=tmp_path / "c.geojson")
    assert info["n_cells"] == 0
    assert pd.read_csv(tmp_path / "c.csv").columns.tolist() == BASE_COLUMNS
    assert json.loads((tmp_path / "c.geojson").read_text()) == {
        "type": "FeatureCollection",
        "features": [],
    }


def test_slide_outputs_beside_the_label_tiff(tmp_path):
    lab, img = _scene(seed=2)
    tifffile.imwrite(tmp_path / "s1.tif", img, photometric="rgb")
    label_tiff = write_labels(tmp_path / "pred" / "s1_label.tiff", lab)
    res = slide_outputs(tmp_path / "s1.tif", label_tiff, ["ome-tiff", "csv", "geojson"])
    names = sorted(p.split("/")[-1] for p in res["outputs"])
    assert names == ["s1_cells.csv", "s1_cells.geojson", "s1_label.ome.tif"]
    assert not label_tiff.exists()  # "tiff" was not asked
    with PyramidReader(tmp_path / "pred" / "s1_label.ome.tif") as r:
        assert np.array_equal(r.read(), lab)
    assert len(pd.read_csv(tmp_path / "pred" / "s1_cells.csv")) == np.unique(lab).size - 1
    with pytest.raises(ValueError, match="unknown"):
        slide_outputs(tmp_path / "s1.tif", label_tiff, ["png"])


def test_predict_tool_writes_the_asked_outputs(tmp_path, monkeypatch):
    from helpers import OracleBackend
    from test_predict_slide import _disc_image

    from cellfuse.app.cli import main
    from student.predictor import StudentPredictor

    lab, img = _disc_image((300, 350), 60, seed=3)
    tifffile.imwrite(tmp_path / "a.tif", img, photometric="rgb")
    fake = StudentPredictor(OracleBackend(), diameter=17.0, tile=256, overlap=64)
    monkeypatch.setattr(StudentPredictor, "from_onnx", classmethod(lambda cls, *a, **k: fake))
    out = tmp_path / "pred"
    (tmp_path / "x.onnx").write_bytes(b"stand-in: from_onnx is patched")
    argv = [
        "--onnx",
        str(tmp_path / "x.onnx"),
        "--input",
        str(tmp_path / "a.tif"),
        "--out",
        str(out),
    ]
    assert main(["predict", *argv, "--outputs", "tiff,ome-tiff,csv,geojson", "--no-progress"]) == 0
    row = json.loads((out / "predict.json").read_text())["rows"][0]
    assert len(row["outputs"]) == 4 and all(
        (out / p.split("/")[-1]).exists() for p in row["outputs"]
    )
    assert len(pd.read_csv(out / "a_cells.csv")) == row["n_cells"] == np.unique(lab).size - 1
    assert main(["predict", *argv, "--outputs", "tiff,png"]) == 2
