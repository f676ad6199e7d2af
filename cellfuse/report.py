"""The run report: an F1 table per stage, speeds, and pictures people can look at.

``work/report/index.html`` (and ``index.md`` with the same content) links PNGs made with
matplotlib (Agg backend, no display needed): predicted outlines next to the truth on a few
test images, and a teacher-disagreement map on an unlabeled image.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# outline colours (RGB 0..1): prediction, truth, then one per teacher
COLORS = [
    (1.0, 0.85, 0.0),
    (0.0, 0.9, 0.3),
    (1.0, 0.2, 0.2),
    (0.2, 0.6, 1.0),
    (1.0, 0.3, 1.0),
    (0.0, 1.0, 1.0),
]


def display_image(image: np.ndarray) -> np.ndarray:
    """HxWxC any dtype -> HxWx3 float in [0, 1] for display (percentile-normalised)."""
    from cellfuse.io import normalize_image, to_rgb

    return np.clip(normalize_image(to_rgb(image), per_channel=False), 0, 1)


def draw_outlines(rgb: np.ndarray, labels: np.ndarray, color: Sequence[float]) -> np.ndarray:
    """Copy of an HxWx3 float image with the instance boundaries of ``labels`` painted."""
    from skimage.segmentation import find_boundaries

    out = rgb.copy()
    out[find_boundaries(labels, mode="inner")] = color
    return out


def _save(fig, path: Path) -> Path:
    from cellfuse.io import atomic_write

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _figure(rows: int, cols: int, size: float = 3.6):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    return fig, axes


def examples_png(
    samples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, float | None]],
    path: str | Path,
) -> Path:
    """Rows of (image | predicted outlines | true outlines).

    Args:
        samples: (id, HxWxC image, HxW predicted labels, HxW truth or None, F1@0.5 or None).
        path: PNG to write.
    """
    fig, axes = _figure(len(samples), 3)
    for row, (iid, image, pred, truth, f1) in zip(axes, samples, strict=True):
        rgb = display_image(image)
        row[0].imshow(rgb)
        row[0].set_title(iid, fontsize=8)
        row[1].imshow(draw_outlines(rgb, pred, COLORS[0]))
        row[1].set_title(
            f"prediction ({int(pred.max())} cells"
            + (f", F1@0.5 {f1:.2f})" if f1 is not None else ")"),
            fontsize=8,
        )
        if truth is not None:
            row[2].imshow(draw_outlines(rgb, truth, COLORS[1]))
            row[2].set_title(f"truth ({len(np.unique(truth)) - 1} cells)", fontsize=8)
    return _save(fig, Path(path))


def disagreement_png(
    image: np.ndarray,
    teachers: Mapping[str, np.ndarray],
    fused: np.ndarray | None,
    ignore: np.ndarray | None,
    path: str | Path,
    title: str = "",
) -> Path:
    """One unlabeled image: each teacher's outlines, the per-pixel disagreement, the fused labels.

    Disagreement is the fraction of teachers that disagree with the majority on whether a
    pixel is a cell (0 = all agree, 0.5 = an even split).
    """
    names = list(teachers)
    fg = np.stack([teachers[n] > 0 for n in names]).astype(np.float32)
    mean = fg.mean(axis=0)
    disagree = np.minimum(mean, 1 - mean)
    cols = len(names) + 2
    fig, axes = _figure(1, cols)
    rgb = display_image(image)
    for i, n in enumerate(names):
        axes[0, i].imshow(draw_outlines(rgb, teachers[n], COLORS[2 + i % 4]))
        axes[0, i].set_title(f"{n} ({int(teachers[n].max())})", fontsize=8)
    im = axes[0, -2].imshow(disagree, cmap="magma", vmin=0, vmax=0.5)
    axes[0, -2].set_title("teacher disagreement", fontsize=8)
    fig.colorbar(im, ax=axes[0, -2], fraction=0.046, pad=0.02)
    if fused is not None:
        shown = draw_outlines(rgb, fused, COLORS[0])
        if ignore is not None:
            shown[ignore] = 0.5 * shown[ignore] + 0.5 * np.array([0.3, 0.3, 1.0])
        axes[0, -1].imshow(shown)
        axes[0, -1].set_title(f"pseudo-labels ({int(fused.max())}), ignore in blue", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, Path(path))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)


def write_report(
    out_dir: str | Path,
    title: str,
    tables: Mapping[str, tuple[Sequence[str], Sequence[Sequence]]],
    figures: Sequence[tuple[str, Path]],
    notes: Sequence[str] = (),
) -> Path:
    """Write ``index.md`` and ``index.html`` in ``out_dir``.

    Args:
        out_dir: report folder (figures should already be inside it).
        title: page title.
        tables: caption -> (header, rows).
        figures: (caption, PNG path) pairs.
        notes: paragraphs shown under the title.

    Returns:
        Path of ``index.html``.
    """
    from cellfuse.io import atomic_write_text

    out_dir = Path(out_dir)
    md = [f"# {title}", ""] + [f"{n}\n" for n in notes]
    body = [f"<h1>{html.escape(title)}</h1>"] + [f"<p>{html.escape(n)}</p>" for n in notes]
    for caption, (header, rows) in tables.items():
        md += [f"## {caption}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
        md.append("")
        body.append(f"<h2>{html.escape(caption)}</h2><table><tr>")
        body.append("".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        body += [
            "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows
        ]
        body.append("</table>")
    for caption, png in figures:
        rel = Path(png).relative_to(out_dir) if Path(png).is_relative_to(out_dir) else Path(png)
        md += [f"## {caption}", "", f"![{caption}]({rel})", ""]
        body.append(
            f'<h2>{html.escape(caption)}</h2><img src="{html.escape(str(rel))}" style="max-width:100%">'
        )
    style = "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    atomic_write_text(out_dir / "index.md", "\n".join(md) + "\n")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    return atomic_write_text(out_dir / "index.html", page)
