# `cellfuse run --profile bench` (tools/benchmark.py): teachers and student at their CPU
# profiles on DSB2018 (~150 min on 2 CPU cores; every stage resumes, so it can run in parts).
_base_ = ["./demo.py"]
teachers = [
    dict(name="flowunet", config="configs/teachers/flowunet_cpu.py"),
    dict(name="maskrcnn", config="configs/teachers/maskrcnn_r18_gn_cpu.py"),
    dict(name="sam", config="configs/teachers/sam_tiny_cpu.py"),
]
student = "configs/student/distill_cpu.py"
