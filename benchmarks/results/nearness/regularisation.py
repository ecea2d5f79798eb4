"""Replay: the nearness weights with the head's weight decay raised, and with the texts no judge labelled (uniform soft
labels) dropped (`near_inf_*`). Usage: python regularisation.py RUN TASK (loads the build as replay.py does)."""
import json, sys
from pathlib import Path
import numpy as np
from p2m_engine.students.probe_student import ProbeConfig
from replay import accuracy, load, nearness

RUN, TASK = Path(sys.argv[1]), sys.argv[2]
b = load(RUN, TASK)
w = nearness(b, 0.05)
informative = (b.targets.max(1) - 1.0 / len(b.labels)) > 0.01
out = {"task": TASK, "run": b.run, "uniform": int((~informative).sum()),
       "enc1": accuracy(b, np.ones(len(b.s)), b.keep), "near": accuracy(b, w, b.keep)}
for wd in (1e-3, 1e-2, 3e-2, 1e-1):
    cfg = ProbeConfig(weight_decay=wd)
    out[f"near_inf_wd{wd}"] = accuracy(b, w, b.keep & informative, cfg)
    out[f"near_wd{wd}"] = accuracy(b, w, b.keep, cfg)
print(json.dumps(out), flush=True)
