import numpy as np
from helpers import disc_labels

from cellfuse.report import disagreement_png, draw_outlines, examples_png, write_report


def test_outlines_are_drawn_on_boundaries_only():
    lab = disc_labels((64, 64), 3, seed=1)
    rgb = np.zeros((64, 64, 3))
    out = draw_outlines(rgb, lab, (1.0, 0.0, 0.0))
    painted = out[..., 0] == 1
    assert painted.any() and not painted[lab == 0].any()
    assert painted.sum() < (lab > 0).sum()


def test_report_files(tmp_path):
    lab = disc_labels((96, 96), 8, seed=2)
    img = (lab > 0).astype(np.uint8)[..., None] * 200
    ex = examples_png([("a", img, lab, lab, 1.0), ("b", img, lab, None, None)], tmp_path / "ex.png")
    dis = disagreement_png(
        img, {"t1": lab, "t2": np.zeros_like(lab)}, lab, lab == 0, tmp_path / "dis.png"
    )
    for p in (ex, dis):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = write_report(
        tmp_path,
        "run",
        {"F1": (["stage", "F1@0.5"], [["student", 0.91234]])},
        [("examples", ex)],
        ["note"],
    )
    text = page.read_text()
    assert "0.912" in text and 'src="ex.png"' in text
    assert "| student | 0.912 |" in (tmp_path / "index.md").read_text()
