# The CPU ensemble plus a second flow U-Net (another seed: configs/teachers/flowunet_cpu_seed1.py),
# every teacher but the refiner voting in 4 test-time views (itself, h/v flips, rot180).
_base_ = ["./pseudo_cpu.py"]

extra_teachers = [
    dict(
        name="flowunet_s1",
        cfg="configs/teachers/flowunet_cpu_seed1.py",
        checkpoint="work/teachers/flowunet_cpu_seed1",
        weight="val_f1",
        optional=True,
    ),
]
views = ["hflip", "vflip", "rot180"]
