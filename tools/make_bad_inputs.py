"""Bad inputs, one per folder, and what ``cellfuse check`` says about each:
``python tools/make_bad_inputs.py OUT [--check]``.

Every case is a small valid input folder (Med-MLE-bench layout: 3 training images with
labels, 2 test images with ``test_labels/``, 1 unlabeled image) with one defect. With
``--check`` each folder is checked and the lines printed as a table (``case | line``);
``tests/test_check.py`` asserts each case's lines.

``CASES[name] = (make, expected)``: ``make(root)`` spoils the valid folder ``root``;
``expected`` is a list of ``(level, text)`` where ``text`` is the start of the line after
``level: `` with ``{root}`` for the folder (an empty list: the input is accepted).
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

H = W = 64


def _labels(seed: int, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros((H, W), np.uint16)
    yy, xx = np.ogrid[:H, :W]
    for k in range(1, n + 1):
        cy, cx = rng.integers(8, H - 8, 2)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = k
    return lab


def _image(lab: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(20 + 150 * (lab > 0) + rng.normal(0, 10, lab.shape), 0, 255).astype(np.uint8)


def make_valid(root: Path) -> Path:
    """A valid input: train/{images,labels} (3), test/images (2) + test_labels, unlabeled (1)."""
    for sub in ("train/images", "train/labels", "test/images", "test_labels", "unlabeled/images"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        lab = _labels(i)
        Image.fromarray(_image(lab, i)).save(root / f"train/images/tr{i}.png")
        tifffile.imwrite(root / f"train/labels/tr{i}_label.tiff", lab)
    for i in range(2):
        lab = _labels(10 + i)
        Image.fromarray(_image(lab, 10 + i)).save(root / f"test/images/te{i}.png")
        tifffile.imwrite(root / f"test_labels/te{i}_label.tiff", lab)
    Image.fromarray(_image(_labels(20), 20)).save(root / "unlabeled/images/un0.png")
    return root


def _replace_test_image(root: Path, name: str, write: Callable[[Path], object]) -> None:
    """Replace test image te0 by ``name`` (its label stays te0_label.tiff)."""
    (root / "test/images/te0.png").unlink()
    write(root / "test/images" / name)


def _truncated(root: Path) -> None:
    def write(p: Path) -> None:
        tifffile.imwrite(p, _image(_labels(10), 10))
        raw = p.read_bytes()
        p.write_bytes(raw[: len(raw) // 2])

    _replace_test_image(root, "te0.tif", write)


def _float_with(root: Path, share: float) -> None:
    data = _image(_labels(10), 10).astype(np.float32)
    flat = data.reshape(-1)
    flat[: max(3, int(share * flat.size))] = np.nan
    flat[-1] = np.inf
    _replace_test_image(root, "te0.tif", lambda p: tifffile.imwrite(p, data))


def _rgba16(root: Path) -> None:
    import imagecodecs

    g = _image(_labels(10), 10).astype(np.uint16) * 257
    rgba = np.stack([g, g, g, np.full_like(g, 65535)], -1)
    _replace_test_image(root, "te0.png", lambda p: p.write_bytes(imagecodecs.png_encode(rgba)))


def _big_endian(root: Path) -> None:
    data = (_image(_labels(10), 10).astype(np.uint16) * 257).astype(">u2")
    _replace_test_image(root, "te0.tif", lambda p: tifffile.imwrite(p, data, byteorder=">"))


def _channel_first(root: Path) -> None:
    g = _image(_labels(10), 10)
    data = np.stack([g, g // 2, g // 3])  # 3xHxW
    _replace_test_image(
        root, "te0.tif", lambda p: tifffile.imwrite(p, data, photometric="minisblack")
    )


def _bigtiff(root: Path) -> None:
    data = _image(_labels(10), 10)
    _replace_test_image(root, "te0.tif", lambda p: tifffile.imwrite(p, data, bigtiff=True))


def _hostile_pickle(root: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (print, ("pickle payload ran",))

    _replace_test_image(root, "te0.tif", lambda p: p.write_bytes(pickle.dumps(Boom())))


def _empty_test_folder(root: Path) -> None:
    for p in (root / "test/images").iterdir():
        p.unlink()
    shutil.rmtree(root / "test_labels")


def _write_label(root: Path, name: str, lab: np.ndarray) -> None:
    tifffile.imwrite(root / "train/labels" / name, lab)


def _semantic(root: Path) -> None:
    _write_label(root, "tr1_label.tiff", (_labels(1) > 0).astype(np.uint8) * 255)


R = "{root}"
CASES: dict[str, tuple[Callable[[Path], None], list[tuple[str, str]]]] = {
    "valid": (lambda root: None, []),
    "missing input folder": (
        lambda root: shutil.rmtree(root),
        [("error", f"{R}: input folder does not exist")],
    ),
    "truncated TIFF": (
        _truncated,
        [("error", f"{R}/test/images/te0.tif: truncated TIFF (pixel data ends at byte")],
    ),
    "zero-byte file": (
        lambda root: (root / "test/images/te1.png").write_bytes(b""),
        [("error", f"{R}/test/images/te1.png: empty file (0 bytes)")],
    ),
    "text as image": (
        lambda root: (root / "train/images/tr0.png").write_text("not an image\n"),
        [("error", f"{R}/train/images/tr0.png: not an image (unknown or corrupt format)")],
    ),
    "hostile pickle as image": (
        _hostile_pickle,
        [("error", f"{R}/test/images/te0.tif: cannot read TIFF header (not a TIFF file")],
    ),
    "1x1 image": (
        lambda root: Image.fromarray(np.ones((1, 1), np.uint8)).save(root / "test/images/te1.png"),
        [("error", f"{R}/test/images/te1.png: image is 1x1; both sides must be at least 2 px")],
    ),
    "constant training image": (
        lambda root: Image.fromarray(np.full((H, W), 7, np.uint8)).save(
            root / "train/images/tr2.png"
        ),
        [("error", f"{R}/train/images/tr2.png: image is constant (all pixels = 7)")],
    ),
    "constant test image": (
        lambda root: Image.fromarray(np.zeros((H, W), np.uint8)).save(root / "test/images/te1.png"),
        [
            (
                "warning",
                f"{R}/test/images/te1.png: image is constant (all pixels = 0); its prediction",
            )
        ],
    ),
    "float with 3 NaN + 1 inf": (
        lambda root: _float_with(root, 0.0),
        [("warning", f"{R}/test/images/te0.tif: replaced 3 NaN and 1 inf pixel values")],
    ),
    "float mostly NaN": (
        lambda root: _float_with(root, 0.6),
        [("error", f"{R}/test/images/te0.tif: image has 2457 NaN and 1 inf pixel values (60%")],
    ),
    "16-bit RGBA PNG": (_rgba16, []),
    "big-endian 16-bit TIFF": (_big_endian, []),
    "channel-first 3xHxW TIFF": (_channel_first, []),
    "BigTIFF": (_bigtiff, []),
    "label/image shape mismatch": (
        lambda root: _write_label(root, "tr0_label.tiff", _labels(0)[:, :60]),
        [
            (
                "error",
                f"{R}/train/labels/tr0_label.tiff: label shape 64x60 does not match image shape 64x64",
            )
        ],
    ),
    "missing training label": (
        lambda root: (root / "train/labels/tr1_label.tiff").unlink(),
        [("error", f"{R}/train/images/tr1.png: no label file in {R}/train/labels")],
    ),
    "missing test label": (
        lambda root: (root / "test_labels/te1_label.tiff").unlink(),
        [("error", f"{R}/test/images/te1.png: no label file in {R}/test_labels")],
    ),
    "negative label ids": (
        lambda root: _write_label(root, "tr0_label.tiff", _labels(0).astype(np.int16) - 1),
        [("error", f"{R}/train/labels/tr0_label.tiff: has negative labels (min -1)")],
    ),
    "fractional label ids": (
        lambda root: _write_label(root, "tr0_label.tiff", _labels(0).astype(np.float32) / 2),
        [("error", f"{R}/train/labels/tr0_label.tiff: labels hold non-integer values")],
    ),
    "semantic mask as label": (
        _semantic,
        [("warning", f"{R}/train/labels/tr1_label.tiff: one id (255) covers")],
    ),
    "label with no cells": (
        lambda root: _write_label(root, "tr0_label.tiff", np.zeros((H, W), np.uint16)),
        [("warning", f"{R}/train/labels/tr0_label.tiff: label has no cells")],
    ),
    "empty test/images": (_empty_test_folder, [("error", f"{R}/test/images: no image files")]),
    "no train/labels folder": (
        lambda root: shutil.rmtree(root / "train/labels"),
        [("error", f"{R}/train/labels: folder does not exist")],
    ),
    "duplicate ids": (
        lambda root: tifffile.imwrite(root / "test/images/te1.tif", _image(_labels(11), 11)),
        [("error", f"{R}/test/images/te1.tif: id 'te1' is also the id of te1.png")],
    ),
    "two problems at once": (
        lambda root: (
            (root / "test/images/te1.png").write_bytes(b""),
            (root / "train/labels/tr1_label.tiff").unlink(),
        ),
        [
            ("error", f"{R}/train/images/tr1.png: no label file in"),
            ("error", f"{R}/test/images/te1.png: empty file (0 bytes)"),
        ],
    ),
}


def build(out: Path) -> dict[str, Path]:
    """Every case under ``out/<case>`` (spaces and slashes as ``_``)."""
    roots = {}
    for name, (make, _) in CASES.items():
        root = out / name.replace(" ", "_").replace("/", "_")
        shutil.rmtree(root, ignore_errors=True)
        make(make_valid(root))
        roots[name] = root
    return roots


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--check", action="store_true", help="check each folder and print the lines")
    args = ap.parse_args(argv)
    roots = build(args.out)
    if not args.check:
        print(f"{len(roots)} inputs under {args.out}")
        return 0
    from cellfuse.check import check_input

    for name, root in roots.items():
        report = check_input(root, root.parent / "work", min_free_bytes=0)
        lines = [p.line.replace(str(root), "IN") for p in report.problems] or ["(accepted)"]
        for line in lines:
            print(f"{name} | {line}")
    return 0


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
