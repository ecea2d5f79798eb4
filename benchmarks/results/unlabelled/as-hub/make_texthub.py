"""How the hub of `as-hub/` was made: links to every shared dataset, plus each task's training inputs (labels
removed, inputs its dev file holds dropped) as three extra dataset folders of four 300-row splits (3,600 texts),
so that the pool read them as hub text. (Emotion's folders were first written without the dev filter; the bench
found no row they share with its dev file and hid none of them. sms_spam's repeat messages of its dev file, so
its folders were written again with the filter.)

    python make_texthub.py /work/shared/data /work/benchruns/texthub
"""
import json
import os
import random
import sys
from pathlib import Path

from p2m_engine.data.synth import normalize

shared, hub = Path(sys.argv[1]), Path(sys.argv[2])
hub.mkdir(parents=True, exist_ok=True)
for d in shared.iterdir():
    if (d / "dataset_info.json").is_file() and not (hub / d.name).exists():
        (hub / d.name).symlink_to(d.resolve(), target_is_directory=True)
for task in ("emotion", "sms_spam"):
    dev = {normalize(json.loads(line)["input"]) for line in open(shared / task / "dev.jsonl")}
    rows = [json.loads(line)["input"] for line in open(shared / task / "train.jsonl")]
    rows = [r for r in rows if normalize(r) not in dev]
    random.Random(0).shuffle(rows)
    for k in range(3):
        folder = hub / f"{task}_texts{k + 1}"
        os.makedirs(folder, exist_ok=True)
        (folder / "dataset_info.json").write_text(json.dumps({"name": folder.name, "title": "unlabelled texts",
                                                              "description": "Unlabelled short texts.",
                                                              "task_type": "unlabelled", "input_field": "input",
                                                              "splits": {}}))
        for j, split in enumerate(("train", "dev", "validation", "test")):
            chunk = rows[(k * 4 + j) * 300:(k * 4 + j + 1) * 300]
            (folder / f"{split}.jsonl").write_text("".join(json.dumps({"input": t}) + "\n" for t in chunk))
