"""Replay: the retrieved rows checked for label consistency (5-fold frozen-encoder head) before fine-tuning.
Usage: python retrieved_consistency.py RUN TASK"""
import json, sys
from pathlib import Path
import numpy as np
from p2m_engine import students
from p2m_engine.data.synth import normalize
from p2m_engine.students.embeddings import embed, packaged_minilm_path
from p2m_engine.students.probe_student import ProbeConfig, consistent
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import Example, TaskSpec

RUN, TASK = Path(sys.argv[1]), sys.argv[2]
D = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data") / TASK
spec = TaskSpec.from_dict(json.loads((RUN / "task.json").read_text()))
labels = tuple(spec.labels)
tr = [Example(r["input"], r["output"]) for r in map(json.loads, open(RUN / "data/train.jsonl"))]
val = [Example(r["input"], r["output"]) for r in map(json.loads, open(RUN / "data/val.jsonl"))]
demos = {normalize(e.input) for e in spec.examples}
dev = [r for r in map(json.loads, open(D / "dev.jsonl")) if normalize(r["input"]) not in demos]
rec = json.loads((RUN / "iterations/1/model/p2m_train.json").read_text())
cfg = TrainConfig(**{k: rec[k] for k in ("epochs", "learning_rate", "batch_size", "max_length", "warmup_ratio",
                                          "weight_decay", "seed", "min_steps", "max_epochs")},
                  base_model=str(packaged_minilm_path()) if "MiniLM" in rec["base_model"] or "minilm" in rec["base_model"] else rec["base_model"])
x = np.asarray(embed([e.input for e in tr]), dtype=np.float32)
t = np.eye(len(labels))[[labels.index(e.output) for e in tr]]
keep = consistent(x, t, ProbeConfig(folds=5))
out = {"task": TASK, "run": str(RUN).split("/runs/")[0].split("/")[-1], "rows": len(tr), "dropped": int((~keep).sum())}
import tempfile
for name, rows in (("control", tr), ("consistent", [e for e, k in zip(tr, keep) if k])):
    d = Path(tempfile.mkdtemp()) / name
    res = students.train_student(spec, rows, val, d, cfg)
    pred = students.predict_student("classification", res.model_dir, [r["input"] for r in dev])
    out[name] = round(100 * float(np.mean([p == r["output"] for p, r in zip(pred, dev)])), 1)
    out[name + "_val"] = round(res.val_score, 4)
print(json.dumps(out), flush=True)
