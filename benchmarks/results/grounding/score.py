import json, sys, time
from pathlib import Path
from p2m_engine.students import predict_student
from p2m_engine.eval.metrics import generation_metrics
OUT = Path(sys.argv[1])
rows = [json.loads(l) for l in open("/work/shared/data/temporal/dev.jsonl")]
t = time.time()
pred = predict_student("generation", OUT, [r["input"] for r in rows])
gold = [r["output"] for r in rows]
print("TEST", generation_metrics(gold, pred), round(time.time() - t), flush=True)
na = [i for i, g in enumerate(gold) if g.strip() == "N/A"]
print("N/A rows", len(na), "predicted N/A there", sum(pred[i].strip() == "N/A" for i in na))
print("non-N/A chrF++", generation_metrics([gold[i] for i in range(len(gold)) if i not in set(na)], [pred[i] for i in range(len(gold)) if i not in set(na)]))
with open(OUT / "pred.jsonl", "w") as f:
    for r, p in zip(rows, pred): f.write(json.dumps({"input": r["input"], "gold": r["output"], "pred": p}) + "\n")
