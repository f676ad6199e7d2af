"""tools/suggest_experiment.py: the chosen sets, the set folders, the summary and targets."""

import json
import sys

from conftest import ROOT
from test_suggest import add_image

sys.path.insert(0, str(ROOT / "tools"))
import suggest_experiment as exp  # noqa: E402


def _pool(tmp_path):
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    mods = {}
    for i in range(12):
        kind = "stained" if i % 4 == 0 else "fluorescence"
        add_image(pseudo, f"c{i:02d}", kind, ignore_cells=i % 5, unconfirmed=i % 3, seed=i)
        mods[f"c{i:02d}"] = kind
    split = {"labeled": ["l0"], "unlabeled_from_train": sorted(mods)}
    return pseudo, split, mods


def test_sets_are_reproducible_and_drawn_from_the_candidates(tmp_path):
    pseudo, split, mods = _pool(tmp_path)
    a = exp.choose_sets(split, mods, pseudo, 4, [0, 1], beta=2)
    b = exp.choose_sets(split, mods, pseudo, 4, [0, 1], beta=2)
    assert {n: s["ids"] for n, s in a.items()} == {n: s["ids"] for n, s in b.items()}
    assert list(a) == ["suggested", "random0", "random1", "stratified"]
    for s in a.values():
        assert len(set(s["ids"])) == 4 and set(s["ids"]) <= set(mods)
    assert a["random0"]["ids"] != a["random1"]["ids"]
    assert a["stratified"]["modalities"] == {"fluorescence": 3, "stained": 1, "brightfield": 0}


def test_set_folder_links_labeled_and_chosen_images(tmp_path):
    src = tmp_path / "src"
    for sub in ("train/images", "train/labels"):
        (src / sub).mkdir(parents=True)
    for iid in ("l0", "c0", "c1"):
        (src / "train/images" / f"{iid}.png").write_bytes(b"i")
        (src / "train/labels" / f"{iid}_label.tiff").write_bytes(b"l")
    folder = exp.build_set(tmp_path / "set", src, ["l0"], ["c1"])
    assert sorted(p.name for p in (folder / "train/images").iterdir()) == ["c1.png", "l0.png"]
    assert (folder / "train/labels/c1_label.tiff").read_bytes() == b"l"
    assert json.loads((folder / "set.json").read_text()) == {"labeled": ["l0"], "chosen": ["c1"]}
    exp.build_set(tmp_path / "set", src, ["l0"], ["c0"])  # rebuilt for another choice
    assert sorted(p.name for p in (folder / "train/images").iterdir()) == ["c0.png", "l0.png"]


def test_training_command_sets_the_budget_and_no_pseudo_labels(tmp_path):
    cmd = exp.train_command(tmp_path / "set", tmp_path / "w", 3000)
    assert "student.pseudo=None" in cmd and "student.max_steps=3000" in cmd
    assert f"data.root={tmp_path / 'set'}" in cmd and "student.val_every_steps=750" in cmd


def test_summary_random_mean_and_targets():
    def rows(fl, st):
        return [
            {"id": "a", "modality": "fluorescence", "f1_50": fl, "f1_75": fl / 2},
            {"id": "b", "modality": "stained", "f1_50": st, "f1_75": st / 2},
        ]

    results = {
        "suggested": {"val": exp.summarize(rows(0.8, 0.7))},
        "random0": {"val": exp.summarize(rows(0.8, 0.5))},
        "random1": {"val": exp.summarize(rows(0.7, 0.6))},
        "stratified": {"val": exp.summarize(rows(0.8, 0.6))},
    }
    assert results["suggested"]["val"]["f1_50"] == 0.75
    assert results["suggested"]["val"]["stained"] == {"n": 1, "f1_50": 0.7, "f1_75": 0.35}
    rnd = exp.random_mean(results)
    assert rnd["f1_50"] == 0.65 and rnd["stained"]["f1_50"] == 0.55
    t = exp.targets(results, rnd)
    assert t["delta_f1_50"] == 0.1 and t["overall_met"]
    assert t["delta_stained_f1_50"] == 0.15 and t["stained_met"]
    assert t["not_below_stratified"] and t["minus_stratified_f1_50"] == 0.05
    text = exp.table(results)
    assert text.splitlines()[2].startswith("| suggested |") and "0.700" in text


def test_oracle_takes_the_images_the_teachers_get_most_wrong(tmp_path):
    from helpers import disc_labels

    from cellfuse.io import write_labels

    pseudo, split, mods = _pool(tmp_path)
    src = tmp_path / "src"
    for i in range(12):  # the truth add_image drew: teacher t_b misses i % 5 of its cells
        write_labels(
            src / "train/labels" / f"c{i:02d}_label.tiff", disc_labels((96, 96), 10, seed=i)
        )
    err = exp.teacher_error(pseudo, src, sorted(mods))
    assert err["c00"] == 0.0 and err["c04"] > err["c03"] > err["c01"] > 0
    oracle = exp.oracle_set(err, 3)
    assert len(oracle["ids"]) == 3 and set(oracle["teacher_error"]) == set(oracle["ids"])
    assert all(err[i] >= max(err[j] for j in err if j not in oracle["ids"]) for i in oracle["ids"])
    sets = exp.choose_sets(split, mods, pseudo, 3, [0], beta=2, oracle_error=err)
    assert sets["oracle"]["ids"] == oracle["ids"] and "oracle" not in exp.choose_sets(
        split, mods, pseudo, 3, [0], beta=2
    )
    assert sum(sets["oracle"]["modalities"].values()) == 3
