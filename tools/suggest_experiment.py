"""Does ``cellfuse suggest`` choose better images to label than chance? (issue 21, item 3)

    python tools/suggest_experiment.py --pseudo PSEUDO_DIR [--scarce work/scarce/scarce_8]
        [--src ../shared/data/dsb2018] [--work work/suggest_exp] [--k 8] [--max-steps 3000]
        [--sets suggested random0 random1 random2 stratified] [--jobs 1] [--out JSON]

Starting from the scarce input's N labeled images (``split.json: labeled``), K more labeled
images are added from its ``unlabeled_from_train`` ids (the candidates; their true labels are
in ``SRC/train/labels``), chosen

- ``suggested``: by :func:`ensemble.suggest.suggest` on the pipeline's pseudo-labels of that
  input (``PSEUDO_DIR``, e.g. ``cellfuse run --profile scarce``'s ``WORK/pseudo``),
  restricted to the candidates;
- ``random<s>``: uniformly at random (numpy seed s);
- ``stratified``: by modality, in proportion to the candidates' modalities (at least one
  each, :func:`cellfuse.scarce.allocate`), at random within a modality (seed 0);
- ``oracle`` (only when named in ``--sets``): the K candidates the teachers actually get most
  wrong, read from their true labels: the ceiling of any uncertainty score, not a strategy.

Each N + K set becomes a Med-MLE-bench ``train/`` folder (symlinks) under
``WORK/sets/<name>``; the labeled-only student is trained on it with the same budget
(``tools/distill.py configs/student/distill_scarce.py --cfg-options student.pseudo=None
data.root=<set> student.max_steps=S``: its checkpoint is chosen on a stratified hold-out of
the set's own images, never on val); only then is every student scored on ``SRC/val``
(F1@0.5 / 0.75, mean per image, overall and per modality). Nothing reads the val labels
before that, and the choice of images reads no label at all (the candidates' labels are read
only to build the sets, and by the ``diagnostic``: how wrong each teacher's cached output
actually is on the chosen images).

Every step resumes: sets are rebuilt identically, a student whose ``done.json`` matches its
set and budget is not retrained (an interrupted one resumes from ``last.pth``), val scores
are cached per checkpoint. The JSON (default ``bench/results/suggest_<date>.json``) holds the
chosen ids, per-set and per-modality scores, the random mean and the targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cellfuse.io import atomic_write_text  # noqa: E402

log = logging.getLogger("suggest_experiment")
STUDENT_CONFIG = "configs/student/distill_scarce.py"
THRESHOLDS = (0.5, 0.75)


# ----------------------------------------------------------------------------- choosing


def choose_sets(
    split: dict,
    mods: dict[str, str],
    pseudo: Path,
    k: int,
    seeds: list[int],
    beta: float,
    oracle_error: dict[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{set name: {"ids": K chosen ids, ...}}`` for suggested / random<s> / stratified, and
    ``oracle`` when the teachers' true error per candidate (:func:`teacher_error`) is given."""
    from cellfuse.modality import MODALITIES
    from cellfuse.scarce import allocate
    from ensemble.suggest import suggest

    cands = sorted(split["unlabeled_from_train"])
    sets: dict[str, dict[str, Any]] = {}
    res = suggest(pseudo, k, ids=cands, beta=beta)
    sets["suggested"] = {
        "ids": [it.id for it in res.picks],
        "scores": [it.score for it in res.picks],
        "reasons": [it.reasons for it in res.picks],
        "suggest_seconds": res.seconds,
        "pool": len(res.ranked),
    }
    for s in seeds:
        rng = np.random.default_rng(s)
        sets[f"random{s}"] = {"ids": sorted(cands[i] for i in rng.choice(len(cands), k, False))}
    counts = {m: sum(mods[i] == m for i in cands) for m in MODALITIES}
    alloc = allocate({m: c for m, c in counts.items() if c}, k)
    rng = np.random.default_rng(0)
    strat = []
    for m in MODALITIES:
        ids = [i for i in cands if mods[i] == m]
        strat += [ids[j] for j in rng.permutation(len(ids))[: alloc.get(m, 0)]]
    sets["stratified"] = {"ids": sorted(strat), "allocation": alloc}
    if oracle_error is not None:
        sets["oracle"] = oracle_set(oracle_error, k)
    for v in sets.values():
        v["modalities"] = {m: sum(mods[i] == m for i in v["ids"]) for m in MODALITIES}
    return sets


def build_set(folder: Path, src: Path, labeled: list[str], chosen: list[str]) -> Path:
    """``folder/train/{images,labels}``: symlinks to the N labeled + K chosen images."""
    import shutil

    from cellfuse.layout import find_label, list_images

    by_id = {p.stem: p for p in list_images(src / "train" / "images")}
    train = folder / "train"
    if train.exists():
        shutil.rmtree(train)
    for sub in ("images", "labels"):
        (train / sub).mkdir(parents=True)
    for iid in sorted(set(labeled) | set(chosen)):
        img = by_id[iid]
        lab = find_label(src / "train" / "labels", iid)
        if lab is None:
            raise FileNotFoundError(f"{src / 'train' / 'labels'}: no label for {iid}")
        (train / "images" / img.name).symlink_to(img.resolve())
        (train / "labels" / lab.name).symlink_to(lab.resolve())
    atomic_write_text(folder / "set.json", json.dumps({"labeled": labeled, "chosen": chosen}))
    return folder


# ----------------------------------------------------------------------------- training


def train_command(set_dir: Path, work: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "tools" / "distill.py"),
        str(ROOT / STUDENT_CONFIG),
        "--work-dir",
        str(work),
        "--cfg-options",
        "student.pseudo=None",
        f"data.root={set_dir}",
        f"student.max_steps={steps}",
        f"student.val_every_steps={max(1, steps // 4)}",
    ]


def train_all(jobs: list[tuple[str, Path, Path, dict]], parallel: int) -> dict[str, float]:
    """Train the students of ``jobs`` (name, set folder, work folder, stamp), ``parallel`` at
    a time, each a ``tools/distill.py`` process (log: ``work/train.log``); returns seconds.

    ``work/job.json`` holds the stamp (set + budget) a training started under: a work folder
    left by another stamp is cleared, one left by the same resumes from ``last.pth``;
    ``work/done.json`` is written when it finished, and a finished job is skipped."""
    import shutil

    todo, running, seconds = [], {}, {}
    for name, set_dir, work, stamp in jobs:
        if (work / "done.json").is_file() and json.loads((work / "done.json").read_text()) == stamp:
            log.info("%s: trained already", name)
            continue
        if (work / "job.json").is_file() and json.loads((work / "job.json").read_text()) != stamp:
            shutil.rmtree(work)
        todo.append((name, set_dir, work, stamp))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    while todo or running:
        while todo and len(running) < parallel:
            name, set_dir, work, stamp = todo.pop(0)
            work.mkdir(parents=True, exist_ok=True)
            (work / "done.json").unlink(missing_ok=True)
            atomic_write_text(work / "job.json", json.dumps(stamp))
            cmd = train_command(set_dir, work, stamp["steps"])
            if (work / "last.pth").exists():
                cmd.append("--resume")
            log.info("training %s: %s", name, " ".join(cmd))
            fh = open(work / "train.log", "a")  # noqa: SIM115 - closed when the process ends
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
            running[name] = (proc, fh, work, stamp, time.time())
        time.sleep(2)
        for name in list(running):
            proc, fh, work, stamp, t0 = running[name]
            if proc.poll() is None:
                continue
            fh.close()
            del running[name]
            if proc.returncode != 0:
                for p, f, *_ in running.values():
                    p.terminate()
                    f.close()
                raise RuntimeError(
                    f"training {name} failed (rc {proc.returncode}): {work}/train.log"
                )
            seconds[name] = round(time.time() - t0, 1)
            atomic_write_text(work / "done.json", json.dumps(stamp))
            log.info("%s trained in %.0f s", name, seconds[name])
    return seconds


# ----------------------------------------------------------------------------- scoring


def score_student(ckpt: Path, val: Path, val_mods: dict[str, str], limit: int | None) -> dict:
    """Per-image F1@0.5/0.75 of a student checkpoint on the val images (+ their modality)."""
    from cellfuse.io import read_image, read_labels
    from cellfuse.layout import find_label, list_images
    from cellfuse.metric import evaluate_image
    from student.predictor import StudentPredictor

    pred = StudentPredictor.from_checkpoint(ckpt, threads=1)
    rows = []
    for p in list_images(val / "images")[:limit]:
        inst = pred.predict(read_image(p, allow_constant=True))
        truth = read_labels(find_label(val / "labels", p.stem))
        sc = evaluate_image(truth, inst.labels, THRESHOLDS)["scores"]
        rows.append(
            {
                "id": p.stem,
                "modality": val_mods[p.stem],
                **{f"f1_{int(t * 100)}": sc[t]["f1"] for t in THRESHOLDS},
            }
        )
    return {"checkpoint": str(ckpt), "images": rows}


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Mean F1 overall and per modality."""
    from cellfuse.modality import MODALITIES

    def mean(sel: list[dict], key: str) -> float | None:
        return round(float(np.mean([r[key] for r in sel])), 4) if sel else None

    out = {"n": len(rows), "f1_50": mean(rows, "f1_50"), "f1_75": mean(rows, "f1_75")}
    for m in MODALITIES:
        sel = [r for r in rows if r["modality"] == m]
        out[m] = {"n": len(sel), "f1_50": mean(sel, "f1_50"), "f1_75": mean(sel, "f1_75")}
    return out


def teacher_error(pseudo: Path, src: Path, ids: list[str]) -> dict[str, float]:
    """``{id: 1 - mean F1@0.5 of the base teachers' cached outputs}`` against the TRAIN labels
    (never val): how wrong the teachers actually are on each image. Reads labels: analysis
    only (the ``diagnostic`` and the ``oracle`` set), never a label-free choice."""
    from cellfuse.io import read_labels
    from cellfuse.layout import find_label
    from cellfuse.metric import evaluate_image
    from ensemble.suggest_report import teacher_outputs

    err: dict[str, float] = {}
    for iid in ids:
        outs = teacher_outputs(pseudo, iid)
        if outs:
            truth = read_labels(find_label(src / "train" / "labels", iid))
            f1 = [evaluate_image(truth, lab, (0.5,))["scores"][0.5]["f1"] for lab in outs.values()]
            err[iid] = 1.0 - float(np.mean(f1))
    return err


def oracle_set(err: dict[str, float], k: int) -> dict[str, Any]:
    """The ceiling of any uncertainty score: the K candidates the teachers get most wrong
    (``err``: :func:`teacher_error`, read from their true labels; not a strategy a lab could
    use)."""
    ids = sorted(err, key=lambda i: (-err[i], i))[:k]
    return {"ids": sorted(ids), "teacher_error": {i: round(err[i], 4) for i in ids}}


def diagnostic(
    pseudo: Path, src: Path, sets: dict, cands: list[str], err: dict[str, float] | None = None
) -> dict[str, Any]:
    """Whether the score finds the images the teachers get wrong: the Spearman correlation of
    the suggest score with the teachers' mean error (:func:`teacher_error`, computed here
    unless ``err`` already holds it for the candidates) over the candidates, and that error
    averaged over each set's K images."""
    from scipy.stats import spearmanr

    from ensemble.suggest import suggest
    from ensemble.suggest_report import teacher_outputs

    res = suggest(pseudo, 1, ids=cands, beta=1)
    score = {it.id: it.score for it in res.ranked}
    if err is None:
        err = teacher_error(pseudo, src, list(score))
    else:
        err = {i: err[i] for i in score if i in err}
    ids = sorted(err)
    rho = (
        spearmanr([score[i] for i in ids], [err[i] for i in ids]).statistic
        if len(ids) > 2
        else None
    )
    return {
        "teachers": sorted(teacher_outputs(pseudo, ids[0])) if ids else [],
        "spearman_score_vs_teacher_error": None if rho is None else round(float(rho), 3),
        "pool_teacher_error": round(float(np.mean(list(err.values()))), 4) if err else None,
        "set_teacher_error": {
            n: round(float(np.mean([err[i] for i in s["ids"] if i in err])), 4)
            for n, s in sets.items()
        },
    }


def time_suggest(pseudo: Path, split: dict, k: int) -> dict[str, Any]:
    """Wall seconds of ``suggest`` + its CSV and contact sheet, on the whole pseudo-labeled pool
    and on the source's own unlabeled images (the pool less the train candidates)."""
    import tempfile

    from ensemble.suggest import pool_entries, suggest
    from ensemble.suggest_report import write_outputs

    every = [e["id"] for e in pool_entries(pseudo)]
    cands = set(split["unlabeled_from_train"])
    out = {}
    for name, ids in (("pool", every), ("unlabeled_only", [i for i in every if i not in cands])):
        if not ids:
            continue
        t0 = time.perf_counter()
        res = suggest(pseudo, k, ids=ids)
        with tempfile.TemporaryDirectory() as tmp:
            write_outputs(res, tmp)
        out[name] = {
            "images": len(ids),
            "rank_seconds": res.seconds,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    return out


def table(results: dict[str, dict]) -> str:
    """Markdown: one row per set (and the random mean), F1@0.5 / @0.75 overall and per modality."""
    from cellfuse.modality import MODALITIES

    def cell(d: dict, key: str) -> str:
        v = d.get(key)
        return "" if v is None else f"{v:.3f}"

    head = (
        "| set | added (fl/st/bf) | F1@0.5 | F1@0.75 | "
        + " | ".join(f"{m} @0.5 | {m} @0.75" for m in MODALITIES)
        + " |"
    )
    lines = [head, "|" + "---|" * (4 + 2 * len(MODALITIES))]
    for name, r in results.items():
        s = r["val"]
        mods = r.get("modalities") or {}
        added = "/".join(str(mods.get(m, "")) for m in MODALITIES)
        cols = [name, added, cell(s, "f1_50"), cell(s, "f1_75")]
        for m in MODALITIES:
            cols += [cell(s.get(m) or {}, "f1_50"), cell(s.get(m) or {}, "f1_75")]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def random_mean(results: dict[str, dict]) -> dict[str, Any] | None:
    from cellfuse.modality import MODALITIES

    rnd = [r["val"] for n, r in results.items() if n.startswith("random")]
    if not rnd:
        return None
    out: dict[str, Any] = {"n_sets": len(rnd)}
    for key in ("f1_50", "f1_75"):
        out[key] = round(float(np.mean([r[key] for r in rnd])), 4)
        out[key + "_sd"] = round(float(np.std([r[key] for r in rnd])), 4)
    for m in MODALITIES:
        vals = [r[m] for r in rnd if r[m]["f1_50"] is not None]
        out[m] = {
            key: round(float(np.mean([v[key] for v in vals])), 4) if vals else None
            for key in ("f1_50", "f1_75")
        }
    return out


def targets(results: dict[str, dict], rnd: dict | None) -> dict[str, Any] | None:
    """Issue 21: suggested >= random mean + 0.02 F1@0.5 (+ 0.05 on stained) and >= stratified."""
    if rnd is None or "suggested" not in results:
        return None
    s = results["suggested"]["val"]
    out = {
        "delta_f1_50": round(s["f1_50"] - rnd["f1_50"], 4),
        "delta_stained_f1_50": (
            round(s["stained"]["f1_50"] - rnd["stained"]["f1_50"], 4)
            if s["stained"]["f1_50"] is not None and rnd["stained"]["f1_50"] is not None
            else None
        ),
    }
    out["overall_met"] = out["delta_f1_50"] >= 0.02
    out["stained_met"] = (
        out["delta_stained_f1_50"] is not None and out["delta_stained_f1_50"] >= 0.05
    )
    if "stratified" in results:
        out["minus_stratified_f1_50"] = round(s["f1_50"] - results["stratified"]["val"]["f1_50"], 4)
        out["not_below_stratified"] = out["minus_stratified_f1_50"] >= 0
    return out


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--pseudo", type=Path, required=True, help="pseudo-labels of the scarce input's pool"
    )
    ap.add_argument("--scarce", type=Path, default=ROOT / "work" / "scarce" / "scarce_8")
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "dsb2018")
    ap.add_argument("--work", type=Path, default=ROOT / "work" / "suggest_exp")
    ap.add_argument("--k", type=int, default=8, help="images added to the labeled ones")
    ap.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--beta", type=float, default=5.0, help="suggest's diversity pre-filter")
    ap.add_argument("--max-steps", type=int, default=3000, help="student budget (the pipeline's)")
    ap.add_argument("--sets", nargs="+", help="only these sets (default: all)")
    ap.add_argument(
        "--jobs", type=int, default=1, help="students trained side by side (1 core each)"
    )
    ap.add_argument("--val-limit", type=int, help="score only the first N val images (smoke runs)")
    ap.add_argument("--out", type=Path, help="JSON (default bench/results/suggest_<date>.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from cellfuse.scarce import modalities

    t_start = time.time()
    split = json.loads((args.scarce / "split.json").read_text())
    cands = sorted(split["unlabeled_from_train"])
    train_mods = modalities(args.src / "train" / "images")
    # the teachers' true error reads the candidates' labels: only when the oracle is asked for
    # (the diagnostic at the end reuses it)
    err = teacher_error(args.pseudo, args.src, cands) if "oracle" in (args.sets or []) else None
    sets = choose_sets(
        split, train_mods, args.pseudo, args.k, args.random_seeds, args.beta, oracle_error=err
    )
    names = args.sets or list(sets)
    unknown = set(names) - set(sets)
    if unknown:
        ap.error(f"unknown sets {sorted(unknown)}; known: {list(sets)}")
    for n in names:
        log.info("%s: %s %s", n, sets[n]["modalities"], sets[n]["ids"])

    jobs = []
    for n in names:
        set_dir = build_set(args.work / "sets" / n, args.src, split["labeled"], sets[n]["ids"])
        stamp = {"steps": args.max_steps, "labeled": split["labeled"], "chosen": sets[n]["ids"]}
        jobs.append((n, set_dir, args.work / "students" / n, stamp))
    train_seconds = train_all(jobs, max(1, args.jobs))

    # Only now, with every student trained, is val read: the test set of this experiment.
    val = args.src / "val"
    val_mods = modalities(val / "images")
    results: dict[str, dict] = {}
    for n in names:
        work = args.work / "students" / n
        result = json.loads((work / "result.json").read_text())
        ckpt = Path(result["checkpoint"])
        cache = work / f"val_scores_{args.val_limit or 'all'}.json"
        key = {"checkpoint": str(ckpt), "mtime": ckpt.stat().st_mtime}
        scored = json.loads(cache.read_text()) if cache.is_file() else None
        if not scored or scored.get("key") != key:
            t0 = time.time()
            scored = {"key": key, **score_student(ckpt, val, val_mods, args.val_limit)}
            scored["seconds"] = round(time.time() - t0, 1)
            atomic_write_text(cache, json.dumps(scored))
        results[n] = {
            **sets[n],
            "val": summarize(scored["images"]),
            "train_seconds": result.get("train_seconds"),
            "train_wall_seconds": train_seconds.get(n),  # this invocation only
            "val_seconds": scored.get("seconds"),
            "holdout_metrics": result.get("val_metrics"),
        }
    rnd = random_mean(results)
    out = {
        "date": dt.date.today().isoformat(),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "scarce": str(args.scarce),
        "pseudo": str(args.pseudo),
        "k": args.k,
        "max_steps": args.max_steps,
        "val_limit": args.val_limit,
        "labeled": split["labeled"],
        "candidates": len(cands),
        "sets": results,
        "random_mean": rnd,
        "targets": targets(results, rnd),
        "diagnostic": diagnostic(
            args.pseudo, args.src, {n: sets[n] for n in names}, cands, err=err
        ),
        "suggest_timing": time_suggest(args.pseudo, split, args.k),
        "seconds": round(time.time() - t_start, 1),
    }
    path = args.out or ROOT / "bench" / "results" / f"suggest_{out['date']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out, indent=2) + "\n")
    print(table(results))
    if rnd:
        print(
            f"random mean F1@0.5 {rnd['f1_50']:.3f} (sd {rnd['f1_50_sd']:.3f}); targets: {out['targets']}"
        )
    print(f"diagnostic: {out['diagnostic']}")
    print(f"suggest timing: {out['suggest_timing']}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
