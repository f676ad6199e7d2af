"""Ray slide blocks: the same labels as the single-process streamed path, also when a
worker is killed mid-slide."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import OracleBackend, disc_labels

KW = dict(tile=128, overlap=32, batch=2, diameter=17.0)  # block=4: two batches per task


def oracle_predictor():
    from student.predictor import StudentPredictor

    return StudentPredictor(OracleBackend(), **KW)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    lab = disc_labels((600, 700), 250, rmin=4, rmax=9, seed=11)
    img = np.where(lab > 0, 180, 30).astype(np.uint8)
    img[0, 0] = 255  # percentiles: keep the discs above 0.5 after normalisation
    path = tmp_path_factory.mktemp("slide") / "slide.tif"
    tifffile.imwrite(path, np.repeat(img[..., None], 3, axis=2), tile=(128, 128), photometric="rgb")
    return path


def _levels(path: Path) -> list[np.ndarray]:
    with tifffile.TiffFile(path) as tif:
        return [lv.asarray() for lv in tif.series[0].levels]


@pytest.fixture(scope="module")
def reference(slide, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "slide_label.tiff"
    info = oracle_predictor().predict_file(slide, out, progress=False, stream=True)
    levels = _levels(out)
    assert info["n_cells"] > 20 and levels[0].max() > 20  # a real test: many cells
    return levels


@pytest.mark.parametrize("kill", [False, True], ids=["plain", "killed-worker"])
def test_ray_blocks_equal_single_process(ray_session, slide, reference, tmp_path, kill):
    from student.ray_slide import RaySlidePredictor

    marker = tmp_path / "died" if kill else None
    pred = RaySlidePredictor(
        factory=oracle_predictor, num_workers=2, block=4, die_once=str(marker) if marker else None
    )
    try:
        info = pred.predict_file(slide, tmp_path / "slide_label.tiff", progress=False)
    finally:
        pred.close()
    assert info["workers"] == 2 and info["blocks"] > 4
    if kill:
        assert marker.exists()  # a worker did die, and its block was rerun
    got = _levels(tmp_path / "slide_label.tiff")
    assert len(got) == len(reference)
    for a, b in zip(got, reference, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ray_blocks_refuse_a_view_vote():
    """A vote needs the whole image in every view; a block is a few tiles of one view."""
    from cellfuse.errors import ConfigError
    from student.predictor import StudentPredictor
    from student.ray_slide import RaySlidePredictor

    with pytest.raises(ConfigError, match="view_vote is not available for Ray slide blocks"):
        RaySlidePredictor(factory=lambda: StudentPredictor(OracleBackend(), view_vote=True, **KW))
