#!/usr/bin/env bash
# after stain_166 (pid $1): flow-only and self-training pseudo-labels at N=8, both students side by side, scores
PY=/work/main/.venv/bin/python
while kill -0 $1 2>/dev/null; do sleep 10; done
echo "stain_166 exited $(date +%T)" >> /work/selftrain/chain.done
cd /work/runs
$PY /work/flowonly/refuse_write.py /work/scarce_runs/stain_8/pseudo /work/flowonly/pseudo8 > /work/flowonly/refuse8.log 2>&1
echo "refuse8 $(date +%T)" >> /work/selftrain/chain.done
mkdir -p /work/selftrain/pseudo8/cache && cp -r /work/scarce_runs/stain_8/pseudo/cache/flowunet* /work/selftrain/pseudo8/cache/
$PY /work/selftrain/pseudo.py /work/scarce_runs/stain_8 /work/selftrain/pseudo8 > /work/selftrain/pseudo8.log 2>&1
echo "selftrain pseudo8 $(date +%T)" >> /work/selftrain/chain.done
$PY -c "from student.distill import distill_file; distill_file('/work/selftrain/flow8.py', '/work/flowonly/student8', '0')" > /work/flowonly/student8.log 2>&1 &
$PY -c "from student.distill import distill_file; distill_file('/work/selftrain/self8.py', '/work/selftrain/student8', '0')" > /work/selftrain/student8.log 2>&1 &
wait
echo "students $(date +%T)" >> /work/selftrain/chain.done
for w in /work/flowonly/student8 /work/selftrain/student8; do
  $PY -m cellfuse predict --checkpoint $w/best.pth --input /work/shared/data/dsb2018/val/images --out $w.pred --threads 2 --no-progress > $w.pred.log 2>&1
  $PY -m cellfuse evaluate /work/shared/data/dsb2018/val/labels $w.pred --out $w.eval > /dev/null 2>&1
  (cd /work/main && .venv/bin/python /work/flowonly/score.py $w.eval/per_image.csv) >> /work/selftrain/scores.txt
  python3 -c "import json; print('$w', json.load(open('$w/result.json'))['val_metrics'])" >> /work/selftrain/scores.txt
done
echo "done $(date +%T)" >> /work/selftrain/chain.done
