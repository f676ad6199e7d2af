#!/usr/bin/env bash
# session 9: after the suggest experiment, the shift run in the current profile, then the N = 8 noisy student
until ! pgrep -f suggest_experiment.py >/dev/null; do sleep 20; done
echo "suggest done $(date +%T)" >> /work/ft/chain.done
cd /work/exp10 || exit 1
PY=/work/main/.venv/bin/python
t0=$(date +%s)
$PY -m cellfuse run --input /work/runs/work/scarce/shift --work /work/scarce_runs/stain_shift --profile scarce > /work/scarce_runs/stain_shift.log 2>&1
echo "stain_shift rc=$? $(( $(date +%s) - t0 )) s $(date +%T)" >> /work/ft/chain.done
EXP=/work/exp10 bash /work/ft/one.sh noisy8
