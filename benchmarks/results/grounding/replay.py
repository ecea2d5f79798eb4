"""Replay: temporal default-budget build's data, labelled pairs filtered by output_not_grounded, same student config.
`replay.py OUT all` keeps every row; `replay.py OUT empty` keeps them all but gives an ungrounded answer the
instruction's empty answer (N/A). Score the model folder with score.py."""
import json, sys, time
from pathlib import Path
from p2m_engine.task import parse_task
from p2m_engine.data.pair_checks import PairChecks
from p2m_engine.students import train_student
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import Example
RUN = next(Path("/work/benchruns/gen13/temporal/runs/temporal/p2m").glob("2026*"))
OUT = Path(sys.argv[1]); MODE = sys.argv[2] if len(sys.argv) > 2 else "grounded"
spec = parse_task(Path("/work/shared/data/temporal/prompt.txt").read_text())
checks = PairChecks.from_demos([e.input for e in spec.examples], [e.output for e in spec.examples])
labelled = {json.loads(l)["input"] for l in open(RUN / "data/labelled.jsonl")}
def load(name):
    rows = [json.loads(l) for l in open(RUN / "data" / name)]
    bad = [r["input"] in labelled and checks.output_problem(r["input"], r["output"]) == "output_not_grounded" for r in rows]
    if MODE == "empty":
        keep = [dict(r, output="N/A") if b else r for r, b in zip(rows, bad)]
    else:
        keep = [r for r, b in zip(rows, bad) if MODE == "all" or not b]
    print(name, len(rows), "->", len(keep), "with", sum(bad), "not grounded", flush=True)
    return [Example(r["input"], r["output"]) for r in keep]
train, val = load("train.jsonl"), load("val.jsonl")
rec = json.load(open(RUN / "iterations/1/model/p2m_train.json"))
cfg = TrainConfig(base_model=rec["base_model"], epochs=3.0, seed=0)
t = time.time()
res = train_student(spec, train, val, OUT, cfg)
print("train", round(time.time() - t), res.n_train, res.n_val, res.val_score, flush=True)
