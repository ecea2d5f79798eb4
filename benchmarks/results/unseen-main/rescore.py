"""Accuracy of committed bench runs with and without the prompt's demonstrations among the test rows (the runs made
before the held-out splits dropped them). Usage: python rescore.py RUN..."""
import json, glob, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from p2m_engine.data.synth import normalize
from p2m_engine.task import parse_task
for run in sys.argv[1:]:
    task = json.loads(open(f"{run}/task.json").read())
    demos = {normalize(e["input"]) for e in task["examples"]}
    preds = [json.loads(l) for l in open(f"{run}/predictions/test.jsonl")]
    kept = [p for p in preds if normalize(p["input"]) not in demos]
    print(run.split("/benchruns/")[1].split("/runs/")[0], run.split("/runs/")[1].split("/")[0],
          round(100 * sum(p["correct"] for p in preds) / len(preds), 1), "->", round(100 * sum(p["correct"] for p in kept) / len(kept), 1),
          f"({len(preds) - len(kept)} demos dropped, n {len(kept)})")
