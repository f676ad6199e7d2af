"""Pseudo-labelling with Ray: serial == Ray, resume, corrupt input, failing and killed workers.

One Ray session for the whole module (start-up takes seconds). Ray workers import the
fault-injecting teacher below from this module (this folder is put on their PYTHONPATH).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from helpers import two_teacher_config

from cellfuse.io import read_image, read_labels
from ensemble.pseudolabel import Manifest, read_val_f1, run_pseudo_label
from teachers.classical import ClassicalTeacher

ROOT = Path(__file__).resolve().parents[1]
DEMO_UNLABELED = ROOT / "data" / "demo" / "unlabeled" / "images"
DSB_UNLABELED = SHARED_DATA / "dsb2018" / "unlabeled" / "images"
PLUGIN = {"faulty": "test_pseudolabel:FaultyTeacher"}


class FaultyTeacher(ClassicalTeacher):
    """The classical teacher, plus injected faults keyed by the image's pixel digest.

    Args:
        kill_on: digests on which the worker process kills itself the first time
            (a marker file in ``marker_dir`` remembers that it did).
        raise_on: digests on which ``predict`` always raises.
    """

    def __init__(self, kill_on=(), raise_on=(), marker_dir=None, **kwargs):
        super().__init__(**kwargs)
        self.kill_on, self.raise_on, self.marker_dir = set(kill_on), set(raise_on), marker_dir

    def predict(self, image):
        digest = pixel_digest(image)
        if digest in self.kill_on:
            marker = Path(self.marker_dir) / f"killed_{digest}"
            if not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        if digest in self.raise_on:
            raise RuntimeError(f"injected failure on {digest[:8]}")
        return super().predict(image)


def pixel_digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def make_cfg(teacher_type="classical", **teacher_kwargs):
    teacher = dict(type=teacher_type, sigma=1.0, min_distance=7, **teacher_kwargs)
    return two_teacher_config(teacher, PLUGIN)


@pytest.fixture
def images(tmp_path):
    """The 4 smallest demo unlabeled images (else DSB unlabeled), copied so tests may edit them."""
    src = DEMO_UNLABELED if DEMO_UNLABELED.is_dir() else DSB_UNLABELED
    if not src.is_dir():
        pytest.skip("no unlabeled images")
    files = sorted(src.glob("*.png"), key=lambda p: (p.stat().st_size, p.name))[:4]
    dst = tmp_path / "images"
    dst.mkdir()
    for f in files:
        shutil.copy(f, dst / f.name)
    return dst


def outputs(out: Path) -> dict[str, tuple]:
    res = {}
    for lab in sorted(out.glob("*_label.tiff")):
        iid = lab.name[: -len("_label.tiff")]
        conf = json.loads((out / f"{iid}_conf.json").read_text())["scores"]
        ignore = read_labels(out / f"{iid}_ignore.tiff")
        res[iid] = (read_labels(lab), np.asarray(conf), ignore)
    return res


def test_serial_and_ray_give_identical_outputs(ray_session, images, tmp_path):
    cfg = make_cfg()
    s = run_pseudo_label(cfg, images, tmp_path / "serial", num_workers=0, progress=False)
    r = run_pseudo_label(cfg, images, tmp_path / "ray", num_workers=2, progress=False)
    assert s["done"] == r["done"] == 4 and s["failed"] == r["failed"] == 0
    assert r["workers"] == 2
    a, b = outputs(tmp_path / "serial"), outputs(tmp_path / "ray")
    assert sorted(a) == sorted(b) and len(a) == 4
    for iid in a:
        for x, y in zip(a[iid], b[iid], strict=True):
            np.testing.assert_array_equal(x, y)
        labels, conf, ignore = a[iid]
        assert conf.size == labels.max() and (conf >= 0.6).all()
        assert not ignore[labels > 0].any()
    entries = Manifest(tmp_path / "ray" / "manifest.jsonl").entries()
    assert sorted(e["id"] for e in entries) == sorted(a)
    assert {e["status"] for e in entries} == {"ok"}
    assert all(e["node"] not in (None, "local") for e in entries)
    # teachers' raw outputs are cached per image
    assert len(list((tmp_path / "ray" / "cache" / "a").glob("*_label.tiff"))) == 4


def test_resume_skips_done_images_and_redoes_changed_ones(ray_session, images, tmp_path):
    out = tmp_path / "out"
    cfg = make_cfg()
    first = run_pseudo_label(cfg, images, out, progress=False)
    assert first["done"] == 4
    again = run_pseudo_label(cfg, images, out, progress=False)
    assert again["skipped"] == 4 and again["done"] == 0 and again["workers"] == 0

    # A changed input is redone, alone.
    victim = sorted(images.glob("*.png"))[0]
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(read_image(victim)[::-1])).save(victim)
    redo = run_pseudo_label(cfg, images, out, progress=False)
    assert (redo["skipped"], redo["done"]) == (3, 1)
    last = Manifest(out / "manifest.jsonl").entries()[-1]
    assert last["id"] == victim.stem

    # A deleted output is redone.
    (out / f"{victim.stem}_ignore.tiff").unlink()
    assert run_pseudo_label(cfg, images, out, progress=False)["done"] == 1

    # A new fusion config redoes everything, from the teachers' cache.
    cache = sorted((out / "cache" / "a").glob("*_label.tiff"))
    mtimes = [p.stat().st_mtime_ns for p in cache]
    cfg["fusion"] = dict(hi=0.8)
    tuned = run_pseudo_label(cfg, images, out, progress=False)
    assert tuned["done"] == 4 and tuned["config_hash"] != first["config_hash"]
    assert [p.stat().st_mtime_ns for p in cache] == mtimes
    entries = Manifest(out / "manifest.jsonl").entries()
    assert len(entries) == 4 + 1 + 1 + 4
    # labels fused from the cache == labels from a fresh run
    fresh = run_pseudo_label(cfg, images, tmp_path / "fresh", num_workers=0, progress=False)
    assert fresh["done"] == 4
    a, b = outputs(out), outputs(tmp_path / "fresh")
    for iid in a:
        for x, y in zip(a[iid], b[iid], strict=True):
            np.testing.assert_array_equal(x, y)


def test_corrupt_image_is_reported_and_the_rest_done(ray_session, images, tmp_path):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    out = tmp_path / "out"
    res = run_pseudo_label(make_cfg(), images, out, progress=False)
    assert res["done"] == 4 and res["failed_ids"] == ["broken"]
    entry = Manifest(out / "manifest.jsonl").latest()["broken"]
    assert entry["status"] == "failed" and entry["error"].startswith("ImageReadError")
    assert entry["attempts"] == 1  # bad input is not retried
    assert not (out / "broken_label.tiff").exists()
    # a re-run does not try the same unreadable file again
    assert run_pseudo_label(make_cfg(), images, out, progress=False)["skipped"] == 5


def test_failing_task_is_retried_then_recorded(ray_session, images, tmp_path):
    victim = sorted(images.glob("*.png"))[1]
    cfg = make_cfg("faulty", raise_on=[pixel_digest(read_image(victim))])
    out = tmp_path / "out"
    res = run_pseudo_label(cfg, images, out, progress=False)
    assert res["done"] == 3 and res["failed_ids"] == [victim.stem]
    entry = Manifest(out / "manifest.jsonl").latest()[victim.stem]
    assert entry["attempts"] == 2  # 1 + retries
    assert "injected failure" in entry["error"]


def test_killed_worker_is_replaced_and_its_image_rerun(ray_session, images, tmp_path):
    victim = sorted(images.glob("*.png"))[2]
    markers = tmp_path / "markers"
    markers.mkdir()
    cfg = make_cfg("faulty", kill_on=[pixel_digest(read_image(victim))], marker_dir=str(markers))
    out = tmp_path / "out"
    res = run_pseudo_label(cfg, images, out, progress=False)
    assert len(list(markers.iterdir())) == 1  # a worker did die
    assert res["done"] == 4 and res["failed"] == 0
    entries = Manifest(out / "manifest.jsonl").entries()
    assert sorted(e["id"] for e in entries) == sorted(p.stem for p in images.glob("*.png"))
    # same labels as an undisturbed serial run
    ref = run_pseudo_label(make_cfg(), images, tmp_path / "ref", num_workers=0, progress=False)
    assert ref["done"] == 4
    # byte-identical labels and ignore masks, the same confidences, for every image
    for p in images.glob("*.png"):
        for sfx in ("_label.tiff", "_ignore.tiff"):
            name = p.stem + sfx
            assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
        conf = [
            json.loads((d / f"{p.stem}_conf.json").read_text()) for d in (out, tmp_path / "ref")
        ]
        assert conf[0]["scores"] == conf[1]["scores"] and conf[0]["stats"] == conf[1]["stats"]


def test_weight_from_val_f1_beside_the_checkpoint(tmp_path):
    from cellfuse.errors import ConfigError

    ckpt = tmp_path / "best.pth"
    ckpt.write_bytes(b"weights")
    (tmp_path / "result.json").write_text(
        json.dumps({"val_metrics": {"f1_50": 0.81, "f1_75": 0.6}})
    )
    assert read_val_f1(ckpt) == pytest.approx(0.81)
    (tmp_path / "result.json").unlink()
    (tmp_path / "best_metrics.json").write_text(
        json.dumps({"iter": 9, "metrics": {"cell/f1_50": 0.7}})
    )
    assert read_val_f1(ckpt) == pytest.approx(0.7)
    (tmp_path / "best_metrics.json").unlink()
    with pytest.raises(ConfigError, match="numeric weight"):
        read_val_f1(ckpt)


def test_refiner_votes_with_the_mean_weight_of_its_prompters(tmp_path):
    from ensemble.teacher_specs import resolve_teachers

    ckpt = tmp_path / "best.pth"
    ckpt.write_bytes(b"weights")
    (tmp_path / "result.json").write_text(json.dumps({"val_metrics": {"f1_50": 0.95}}))
    classical = dict(type="classical")
    entries = [
        dict(name="a", cfg=classical, weight=0.6),
        dict(name="b", cfg=classical, weight=0.8),
        dict(name="r", cfg=classical, checkpoint=str(ckpt)),  # val F1 with true prompts: 0.95
    ]
    w = {s.name: s.weight for s in resolve_teachers(entries, refiner="r")}
    assert w == pytest.approx({"a": 0.6, "b": 0.8, "r": 0.7})
    assert {s.name: s.weight for s in resolve_teachers(entries)}["r"] == pytest.approx(0.95)
    entries[2]["weight"] = 0.5  # an explicit number is kept
    assert {s.name: s.weight for s in resolve_teachers(entries, refiner="r")}["r"] == 0.5


def test_classical_teacher_fit_load_predict(tmp_path):
    from cellfuse.layout import list_samples
    from teachers import build_teacher, load_teacher

    train_dir = ROOT / "data" / "demo" / "train"
    if not train_dir.is_dir():
        pytest.skip("no demo train split")
    samples = list_samples(train_dir, require_labels=True)[:3]
    teacher = build_teacher(dict(type="classical", grid_sigma=(1.0,), grid_min_distance=(5, 7)))
    ckpt = teacher.fit(samples[:2], samples[2:], tmp_path)
    assert 0.0 < teacher.val_metrics["f1_50"] <= 1.0
    assert read_val_f1(ckpt) == pytest.approx(teacher.val_metrics["f1_50"])
    loaded = load_teacher(dict(type="classical"), ckpt)
    assert loaded.params == teacher.params
    inst = loaded.predict(read_image(samples[2].image))
    assert inst.n > 0 and ((inst.scores >= 0.5) & (inst.scores <= 1.0)).all()


def test_cli_runs_serially(images, tmp_path):
    from cellfuse.app.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "pseudo-label",
            "configs/ensemble/pseudo_demo.py"
            if Path.cwd() == ROOT
            else str(ROOT / "configs/ensemble/pseudo_demo.py"),
            "--images",
            str(images),
            "--out",
            str(out),
            "--num-workers",
            "0",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert len(list(out.glob("*_label.tiff"))) == 4


def test_resolve_teachers_reads_work_dirs_skips_optional_and_rejects_bad_entries(tmp_path):
    from cellfuse.errors import ConfigError
    from ensemble.pseudolabel import _runtime_env, resolve_teachers

    work = tmp_path / "flowunet_cpu"
    work.mkdir()
    ckpt = work / "best.pth"
    ckpt.write_bytes(b"weights")
    result = {"checkpoint": str(ckpt), "val_metrics": {"f1_50": 0.8}}
    (work / "result.json").write_text(json.dumps(result))
    classical = dict(type="classical")
    specs = resolve_teachers(
        [
            dict(name="net", cfg=classical, checkpoint=str(work)),
            dict(name="gone", cfg=classical, checkpoint=str(tmp_path / "nope"), optional=True),
            dict(name="otsu", cfg=classical, checkpoint=None, weight=0.5),
        ]
    )
    assert [s.name for s in specs] == ["net", "otsu"]
    assert specs[0].checkpoint == str(ckpt) and specs[0].weight == pytest.approx(0.8)
    assert len(specs[0].checkpoint_sha1) == 40 and specs[1].checkpoint is None
    with pytest.raises(ConfigError, match="not found"):
        resolve_teachers([dict(name="x", cfg=classical, checkpoint=str(tmp_path / "nope"))])
    with pytest.raises(ConfigError, match="unique 'name'"):
        resolve_teachers([dict(name="x", cfg=classical), dict(name="x", cfg=classical)])
    with pytest.raises(ConfigError, match="one of"):
        resolve_teachers([dict(name="x", cfg=dict(type="nosuch"))])
    with pytest.raises(ConfigError, match="unknown keys"):
        resolve_teachers([dict(name="x", cfg=classical, wieght=1.0)])
    env = _runtime_env({"env_vars": {"OMP_NUM_THREADS": 1}})
    assert env["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert str(ROOT) in env["env_vars"]["PYTHONPATH"]


def test_a_teacher_far_below_the_best_does_not_vote_or_weigh_on_the_refiner(tmp_path):
    from cellfuse.errors import ConfigError
    from ensemble.teacher_specs import resolve_teachers

    classical = dict(type="classical")
    entries = []
    for name, f1 in (("good", 0.8), ("weak", 0.3), ("r", 0.9)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "best.pth").write_bytes(name.encode())
        (tmp_path / name / "result.json").write_text(
            json.dumps(
                {"checkpoint": str(tmp_path / name / "best.pth"), "val_metrics": {"f1_50": f1}}
            )
        )
        entries.append(dict(name=name, cfg=classical, checkpoint=str(tmp_path / name)))
    entries.append(dict(name="fixed", cfg=classical, weight=0.2))  # explicit: kept as given
    w = {s.name: s.weight for s in resolve_teachers(entries, refiner="r")}
    assert w == pytest.approx({"good": 0.8, "weak": 0.0, "r": 0.5, "fixed": 0.2})
    w = {s.name: s.weight for s in resolve_teachers(entries, refiner="r", min_weight_fraction=0.3)}
    assert w == pytest.approx({"good": 0.8, "weak": 0.3, "r": 0.433333, "fixed": 0.2})
    with pytest.raises(ConfigError, match="min_weight_fraction"):
        resolve_teachers(entries, min_weight_fraction=1.5)


def test_views_invert_and_a_teacher_votes_once_per_view(tmp_path):
    """Every view's inverse undoes it (HxWxC images, HxW labels); a teacher with views becomes
    one spec per view sharing its weight, run on the transformed image and mapped back."""
    from cellfuse.errors import ConfigError
    from cellfuse.flip_views import VIEWS, from_view, to_view
    from cellfuse.fusion import FusionParams
    from ensemble.teacher_specs import resolve_teachers
    from ensemble.worker import PseudoLabeler

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    for v in VIEWS:
        seen = to_view(img, v)
        assert seen.flags.c_contiguous and sorted(seen.shape[:2]) == [5, 7]
        assert np.array_equal(from_view(seen[..., 0], v), img[..., 0]), v
    assert len({to_view(img, v).tobytes() for v in VIEWS}) == 8  # eight different views

    classical = dict(type="classical", sigma=1.0, min_distance=7)
    entries = [
        dict(name="a", cfg=classical, weight=0.9, views=["hflip", "rot90", "identity"]),
        dict(name="b", cfg=classical, weight=0.6),
    ]
    specs = resolve_teachers(entries)
    assert [(s.name, s.view, s.model) for s in specs] == [
        ("a", None, "a"),
        ("a@hflip", "hflip", "a"),
        ("a@rot90", "rot90", "a"),
        ("b", None, "b"),
    ]
    assert [s.weight for s in specs] == pytest.approx([0.3, 0.3, 0.3, 0.6])
    assert len({s.key for s in specs[:3]}) == 3  # each view has its own cache key
    # a config-wide default: every teacher but the refiner, unless an entry names its own
    names = [s.name for s in resolve_teachers([*entries[1:], entries[0]], views=["vflip"])]
    assert names == ["b", "b@vflip", "a", "a@hflip", "a@rot90"]
    both = [*entries, dict(name="r", cfg=classical)]
    assert [s.name for s in resolve_teachers(both, refiner="r", views=["vflip"])][-2:] == [
        "b@vflip",
        "r",
    ]
    with pytest.raises(ConfigError, match="unknown view"):
        resolve_teachers([dict(name="a", cfg=classical, views=["rot45"])])
    with pytest.raises(ConfigError, match="refiner cannot have views"):
        resolve_teachers([*entries, dict(name="r", cfg=classical, views=["hflip"])], refiner="r")
    with pytest.raises(ConfigError, match="without '@'"):
        resolve_teachers([dict(name="a@b", cfg=classical)])

    # the worker loads one model per teacher and predicts each view in its own frame
    image = read_image(sorted((ROOT / "data" / "demo" / "train" / "images").iterdir())[0])
    labeler = PseudoLabeler(specs, FusionParams(), str(tmp_path))
    assert sorted(labeler.models) == ["a", "b"]
    preds = labeler.predict_teachers(image, "x", "sha")
    model = labeler.models["a"]
    for s, p in zip(specs[:3], preds[:3], strict=True):
        want = model.predict(image) if s.view is None else model.predict(to_view(image, s.view))
        want_labels = want.labels if s.view is None else from_view(want.labels, s.view)
        assert np.array_equal(p.labels, want_labels) and p.shape == image.shape[:2]
    assert (tmp_path / "cache" / "a@rot90" / "x_label.tiff").is_file()


def test_records_carry_output_hashes_and_a_mixed_up_file_is_redone(images, tmp_path):
    out = tmp_path / "out"
    first = run_pseudo_label(make_cfg(), images, out, num_workers=0, progress=False)
    assert first["done"] == 4
    latest = Manifest(out / "manifest.jsonl").latest()
    ids = sorted(latest)
    assert set(latest[ids[0]]["outputs"]) == {"_label.tiff", "_conf.json", "_ignore.tiff"}
    good = (out / f"{ids[0]}_ignore.tiff").read_bytes()
    # a crash or another run left another image's ignore mask under this image's name
    shutil.copy(out / f"{ids[1]}_ignore.tiff", out / f"{ids[0]}_ignore.tiff")
    again = run_pseudo_label(make_cfg(), images, out, num_workers=0, progress=False)
    assert (again["skipped"], again["done"]) == (3, 1)
    assert (out / f"{ids[0]}_ignore.tiff").read_bytes() == good
