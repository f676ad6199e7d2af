#!/usr/bin/env bash
# one student config /work/ft/$1.py (a run's stage config with one option changed: finetune_fraction=0.5, soft_teacher=..., seed = 1|2, pseudo_noise=...), trained from a frozen worktree ($EXP, default /work/exp8), then its val scores
PY=/work/main/.venv/bin/python
n=$1
cd ${EXP:-/work/exp8}
echo "$n start $(date +%T)" >> /work/ft/chain.done
$PY -c "from student.distill import distill_file; distill_file('/work/ft/$n.py', '/work/ft/$n', '0')" > /work/ft/$n.log 2>&1
echo "$n trained $(date +%T)" >> /work/ft/chain.done
w=/work/ft/$n
$PY -m cellfuse predict --checkpoint $w/best.pth --input /work/shared/data/dsb2018/val/images --out $w.pred --threads 1 --no-progress > $w.pred.log 2>&1
$PY -m cellfuse evaluate /work/shared/data/dsb2018/val/labels $w.pred --out $w.eval > /dev/null 2>&1
echo $n $($PY docs/scarce_scripts/score_by_modality.py $w.eval/per_image.csv) >> /work/ft/scores.txt
python3 -c "import json; print('$n', json.load(open('$w/result.json'))['val_metrics'])" >> /work/ft/scores.txt
echo "$n done $(date +%T)" >> /work/ft/chain.done
