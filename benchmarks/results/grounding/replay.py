"""Replay: temporal default-budget build's data, labelled pairs filtered by output_not_grounded, same student config.
Score the model folder with score.py."""
import json, sys, time
from pathlib import Path
from p2m_engine.task import parse_task
from p2m_engine.data.pair_checks import PairChecks
from p2m_engine.students import train_student
from p2m_engine.students.train import TrainConfig
from p2m_engine.types import Example
RUN = next(Path("/work/benchruns/gen13/temporal/runs/temporal/p2m").glob("2026*"))
OUT = Path(sys.argv[1]); KEEP = len(sys.argv) > 2 and sys.argv[2] == "all"
spec = parse_task(Path("/work/shared/data/temporal/prompt.txt").read_text())
checks = PairChecks.from_demos([e.input for e in spec.examples], [e.output for e in spec.examples])
labelled = {json.loads(l)["input"] for l in open(RUN / "data/labelled.jsonl")}
def load(name):
    rows = [json.loads(l) for l in open(RUN / "data" / name)]
    keep = [r for r in rows if KEEP or r["input"] not in labelled or not checks.output_problem(r["input"], r["output"])]
    print(name, len(rows), "->", len(keep), flush=True)
    return [Example(r["input"], r["output"]) for r in keep]
train, val = load("train.jsonl"), load("val.jsonl")
rec = json.load(open(RUN / "iterations/1/model/p2m_train.json"))
cfg = TrainConfig(base_model=rec["base_model"], epochs=3.0, seed=0)
t = time.time()
res = train_student(spec, train, val, OUT, cfg)
print("train", round(time.time() - t), res.n_train, res.n_val, res.val_score, flush=True)
