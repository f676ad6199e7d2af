"""The scarce-label curves: ``cellfuse run --profile scarce`` on each input of
``tools/make_scarce.py`` and one table + one PNG of what the unlabeled images bought.

    python tools/benchmark.py --parts scarce [--scarce-inputs scarce_8 shift ...]

Each input runs in ``WORK/scarce/<name>`` (every stage resumes, so the runs can span
sessions). The part collects, per input: the test (DSB val) F1@0.5/0.75 of the labeled-only
student, the distilled student, the fused ensemble as a predictor and each teacher (its
plain view, and its views fused), overall and per modality, with each stage's wall time;
plus the classical teacher with its default parameters (N = 0: no labels at all). It draws
F1@0.5 against N per model and the modality-shift bars per modality.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cellfuse.io import atomic_write_text

log = logging.getLogger("benchmark.scarce")

INPUTS = ("scarce_8", "scarce_16", "scarce_33", "scarce_166", "shift")
MODELS = ("student_labeled_only", "student", "ensemble")


def classical_n0(test_images: Path, truth: Path, cache: Path) -> dict[str, Any]:
    """The classical teacher with its default parameters on the test images (N = 0)."""
    if cache.is_file():
        return json.loads(cache.read_text())
    from cellfuse.app.evaluation import by_modality
    from cellfuse.io import read_image, read_labels
    from cellfuse.layout import find_label, image_id, list_images
    from cellfuse.metric import evaluate_image
    from cellfuse.modality import modality
    from teachers.classical import ClassicalTeacher

    teacher = ClassicalTeacher()
    rows = []
    for p in list_images(test_images):
        image = read_image(p, allow_constant=True)
        s = evaluate_image(
            read_labels(find_label(truth, image_id(p))), teacher.predict(image).labels, (0.5, 0.75)
        )["scores"]
        rows.append(dict(modality=modality(image), f1_50=s[0.5]["f1"], f1_75=s[0.75]["f1"]))
    res = {
        "f1_50": sum(r["f1_50"] for r in rows) / len(rows),
        "f1_75": sum(r["f1_75"] for r in rows) / len(rows),
        "by_modality": by_modality(rows),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps(res, indent=2) + "\n")
    return res


def summarise(models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rows of one run: both students, the ensemble, each teacher in its plain view and
    the best teacher (by test F1 — a ceiling, reported, never used to choose)."""
    out = {m: models[m] for m in MODELS if m in models}
    teachers = {n: r for n, r in models.items() if n not in MODELS and "@" not in n}
    out.update({f"teacher:{n}": r for n, r in teachers.items()})
    if teachers:
        best = max(teachers, key=lambda n: teachers[n]["f1_50"])
        out["best_teacher"] = dict(teachers[best], name=best)
    return out


def part_scarce(
    scarce_root: Path, work: Path, names: list[str], profile: str = "scarce", run: bool = True
) -> dict[str, Any]:
    """Run (or only collect, ``run=False``) each input; returns the JSON section."""
    from cellfuse.app.pipeline import run as run_pipeline

    res: dict[str, Any] = {"profile": profile, "runs": {}}
    for name in names:
        inp = scarce_root / name
        if not (inp / "split.json").is_file():
            raise FileNotFoundError(f"{inp}: no split.json (run tools/make_scarce.py first)")
        split = json.loads((inp / "split.json").read_text())
        wdir = work / "scarce" / name
        if run:
            run_pipeline(inp, wdir, profile=profile)
        ev = wdir / "stages" / "evaluate.json"
        if not ev.is_file():
            log.warning("%s: not evaluated yet", name)
            continue
        rec = json.loads(ev.read_text())
        stages = {
            p.stem: json.loads(p.read_text()).get("seconds")
            for p in sorted((wdir / "stages").glob("*.json"))
        }
        res["runs"][name] = {
            "kind": split["kind"],
            "n": len(split["labeled"]),
            "labeled": split["labeled"],
            "labeled_modalities": split["labeled_modalities"],
            "unlabeled_images": split["unlabeled_images"],
            "stage_seconds": stages,
            "seconds": round(sum(v or 0 for v in stages.values()), 1),  # students overlap
            # wall clock of the run's last `cellfuse run` (all of it when it never resumed)
            "wall_seconds": _last_wall(wdir),
            "models": summarise(rec["models"]),
        }
        first = inp
    if res["runs"]:
        res["classical_n0"] = classical_n0(
            first / "test" / "images", first / "test_labels", work / "scarce" / "classical_n0.json"
        )
    return res


def _last_wall(wdir: Path) -> float | None:
    """``seconds`` of ``run.json``: the wall clock of the last ``cellfuse run`` invocation."""
    try:
        return json.loads((wdir / "run.json").read_text())["seconds"]
    except (OSError, ValueError, KeyError):
        return None


def _f(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else ""


def table(res: dict[str, Any]) -> str:
    """Markdown: one row per (input, model), F1@0.5 / @0.75 overall and F1@0.5 per modality."""
    mods = ("fluorescence", "stained", "brightfield")
    lines = [
        "| input | model | F1@0.5 | F1@0.75 | " + " | ".join(f"{m} @0.5" for m in mods) + " |",
        "|---|---|---|---|" + "---|" * len(mods),
    ]
    c0 = res.get("classical_n0")
    if c0:
        bm = c0["by_modality"]
        lines.append(
            f"| N = 0 | classical (defaults) | {_f(c0['f1_50'])} | {_f(c0['f1_75'])} | "
            + " | ".join(_f(bm.get(m, {}).get("f1_50")) for m in mods)
            + " |"
        )
    for name, r in res.get("runs", {}).items():
        for model, m in r["models"].items():
            label = model + (f" ({m['name']})" if model == "best_teacher" else "")
            bm = m.get("by_modality", {})
            lines.append(
                f"| {name} | {label} | {_f(m['f1_50'])} | {_f(m['f1_75'])} | "
                + " | ".join(_f(bm.get(x, {}).get("f1_50")) for x in mods)
                + " |"
            )
    return "\n".join(lines)


def plot(res: dict[str, Any], png: Path) -> Path:
    """Left: F1@0.5 vs number of labels per model; right: the shift run per modality."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    runs = res.get("runs", {})
    scarce = sorted((r["n"], r) for r in runs.values() if r["kind"] == "scarce")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    series = {
        "labeled-only student": "student_labeled_only",
        "distilled student": "student",
        "fused ensemble": "ensemble",
        "best teacher": "best_teacher",
    }
    for label, key in series.items():
        pts = [(n, r["models"][key]["f1_50"]) for n, r in scarce if key in r["models"]]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", alpha=0.8, label=label)
    if res.get("classical_n0"):
        ax.scatter([0], [res["classical_n0"]["f1_50"]], marker="s", c="k", label="classical, N=0")
    ax.set_xscale("symlog", linthresh=4)
    ticks = [0, *[n for n, _ in scarce]]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlim(-0.5, 250)
    ax.set_xlabel("labeled images N")
    ax.set_ylabel("F1@0.5 on DSB val (67 images)")
    ax.set_title("Scarce labels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    shift = runs.get("shift")
    mods = ("fluorescence", "stained", "brightfield")
    if shift:
        keys = [k for k in ("student_labeled_only", "student", "ensemble") if k in shift["models"]]
        width = 0.8 / max(len(keys), 1)
        for i, k in enumerate(keys):
            vals = [
                shift["models"][k].get("by_modality", {}).get(m, {}).get("f1_50", 0) for m in mods
            ]
            ax.bar([j + i * width for j in range(len(mods))], vals, width, label=k)
        ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(mods))], mods)
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5,
            0.5,
            "no shift run in this collection\n(docs/scarce.md has the last one)",
            ha="center",
            va="center",
        )
    ax.set_title("Modality shift: fluorescence labels only")
    ax.set_ylabel("F1@0.5")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
