"""Replay: weight of the rows only the encoder judges labelled, against the rows every judge labelled.
Usage: python row_weights.py RUN TASK"""
import json, sys
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nearness"))
from replay import accuracy, load  # the same loading of a build's rows, encoder and dev split

RUN, TASK = Path(sys.argv[1]), sys.argv[2]
b = load(RUN, TASK)
kind, keep = b.kind, b.keep
acc = lambda w: accuracy(b, w, keep)
out = {"task": TASK, "run": b.run, "n": {k: int(((kind == k) & keep).sum()) for k in ("all", "encoder", "fixed")}}
for we in (1.0, 0.5, 0.25, 0.0):
    out[f"enc{we}"] = acc(np.where(kind == "encoder", we, 1.0))
# teacher-judged rows upweighted to match the encoder rows' total
n_all, n_enc = ((kind != "encoder") & keep).sum(), ((kind == "encoder") & keep).sum()
out["balanced"] = acc(np.where(kind == "encoder", 1.0, n_enc / max(n_all, 1)))
print(json.dumps(out))
