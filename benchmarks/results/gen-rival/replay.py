"""Replay a committed generation build's own train/val rows with the teacher-born rival: the embedded teacher's
weights fine-tuned with LoRA for STEPS optimizer steps (p2m_engine.students.student_choice), then scored on the
task's dev rows (the first N). Usage, from the repo with P2M_HOME set as for the build:

    python benchmarks/results/gen-rival/replay.py RUN TASK OUT STEPS [N]

RUN is the build's run folder (its data/train.jsonl and data/val.jsonl), TASK a folder name under ../shared/data.
The logs beside this file (replay-TASK-20.log) came from its first draft: the same training and scoring, printed as
`train SECONDS ROWS VAL_ROWS val chrF++ X` and `TEST first N {...}`. Runs: temporal on
grounding-build's run (260 dev rows), spider on gen-types run 9's (N=100)."""
import json
import sys
import time
from pathlib import Path

from p2m_engine.eval.metrics import generation_metrics
from p2m_engine.llm.embedded import embedded_model_path
from p2m_engine.students import predict_student
from p2m_engine.students.packaged import ensure_teacher_lm
from p2m_engine.students.textgen import GenerationConfig, train_generator
from p2m_engine.students.train import TrainConfig
from p2m_engine.task import parse_task
from p2m_engine.types import Example

RUN, TASK, OUT, STEPS = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
N = int(sys.argv[5]) if len(sys.argv) > 5 else None
HUB = Path("../shared/data")
spec = parse_task((HUB / TASK / "prompt.txt").read_text())


def load(name: str) -> list[Example]:
    return [Example(r["input"], r["output"]) for r in map(json.loads, open(RUN / "data" / name))]


train, val = load("train.jsonl"), load("val.jsonl")
config = TrainConfig(base_model=str(ensure_teacher_lm(embedded_model_path())), epochs=3.0, seed=0, max_steps=STEPS)
t = time.time()
if not (OUT / "config.json").exists():
    res = train_generator(train, val, OUT, config, None, GenerationConfig(lora="on"), spec.instruction)
    print("train s", round(time.time() - t), "rows", res.n_train, res.n_val, "val chrF++", round(res.val_score, 4))
rows = [json.loads(line) for line in open(HUB / TASK / "dev.jsonl")][:N]
t = time.time()
pred = predict_student("generation", OUT, [r["input"] for r in rows])
gold = [r["output"] for r in rows]
print("predict s", round(time.time() - t))
for n in sorted({50, 100, len(rows)}):
    if n <= len(rows):
        print("first", n, {k: round(v, 4) for k, v in generation_metrics(gold[:n], pred[:n]).items()})
with open(OUT.with_suffix(".pred.jsonl"), "w") as f:
    for r, p in zip(rows, pred):
        f.write(json.dumps({"input": r["input"], "gold": r["output"], "pred": p}, ensure_ascii=False) + "\n")
