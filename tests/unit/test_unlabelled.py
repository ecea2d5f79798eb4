"""The user's own unlabelled inputs (--unlabelled): read, put in the pool, labelled, recorded, and refused when bad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2m_engine.data.labelling import LabelConfig, label_texts
from p2m_engine.data.pool import UNLABELLED, collect
from p2m_engine.data.synth import normalize
from p2m_engine.data.unlabelled import read_unlabelled
from p2m_engine.errors import DatasetError
from p2m_engine.runs import read_jsonl
from tests.unit.test_labelling import SPEC, SPORT, WEATHER, KeywordTeacher


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_read_unlabelled_takes_jsonl_fields_or_lines_once_each(tmp_path: Path) -> None:
    jsonl = _write(tmp_path / "texts.jsonl", [json.dumps({"input": "a goal"}), json.dumps({"text": " rain today "}),
                                              json.dumps({"input": "a goal"}), json.dumps({"label": 3}), "not json"])
    assert read_unlabelled(jsonl) == ["a goal", "rain today"]
    txt = _write(tmp_path / "texts.txt", ["first message", "", "second message", "first message"])
    assert read_unlabelled(txt) == ["first message", "second message"]


def test_read_unlabelled_samples_a_large_file_by_seed_in_file_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "many.txt", [f"text {i}" for i in range(50)])
    a, b = read_unlabelled(path, limit=10, seed=1), read_unlabelled(path, limit=10, seed=1)
    assert a == b and len(a) == 10 and a == sorted(a, key=lambda t: int(t.split()[1]))
    assert read_unlabelled(path, limit=10, seed=2) != a


@pytest.mark.parametrize("lines", [[], ["", "   "], [json.dumps({"label": 1})]])
def test_a_file_without_text_is_refused_with_what_to_give(tmp_path: Path, lines: list[str]) -> None:
    path = _write(tmp_path / "empty.jsonl", lines)
    with pytest.raises(DatasetError, match="no texts"):
        read_unlabelled(path)
    with pytest.raises(DatasetError, match="no such file"):
        read_unlabelled(tmp_path / "missing.txt")


def _weather_hub(root: Path) -> Path:
    folder = root / "hub" / "forecasts"
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text(json.dumps({"name": "forecasts", "task_type": "generation"}))
    (folder / "train.jsonl").write_text("".join(json.dumps({"input": t, "output": "-"}) + "\n" for t in WEATHER))
    return root / "hub"


def test_the_users_texts_join_the_pool_whole_and_held_out_ones_never(tmp_path: Path) -> None:
    long = "the final went to extra time " * 20  # longer than any hub piece may be, but an input as it is
    own = _write(tmp_path / "own.txt", [*SPORT, long])
    demos = [e.input for e in SPEC.examples]
    texts, vecs = collect([_weather_hub(tmp_path)], demos, exclude={normalize(SPORT[0])}, unlabelled=own)
    by_source = {t.text: t.source for t in texts}
    assert {by_source[t] for t in SPORT[1:]} == {UNLABELLED} and by_source[long.strip()] == UNLABELLED
    assert SPORT[0] not in by_source and by_source[WEATHER[0]] == "forecasts/train" and len(vecs) == len(texts)
    without, _ = collect([_weather_hub(tmp_path / "again")], demos)
    assert all(t.source != UNLABELLED for t in without)


def test_label_texts_labels_the_users_texts_where_the_hub_has_none_of_a_label(tmp_path: Path) -> None:
    own = _write(tmp_path / "own.jsonl", [json.dumps({"input": t}) for t in SPORT])
    out = tmp_path / "labelled.jsonl"
    label_texts(SPEC, [_weather_hub(tmp_path)], out, LabelConfig(texts=12, keep=1.0, written=0), llm=KeywordTeacher(),  # type: ignore[arg-type]
                unlabelled=own)
    rows = list(read_jsonl(out))
    sport = [r for r in rows if r["output"] == "sport"]
    assert sport and all(r["hub"] == UNLABELLED and r["input"] in SPORT for r in sport)
    hub_only = tmp_path / "hub_only.jsonl"
    label_texts(SPEC, [_weather_hub(tmp_path / "again")], hub_only, LabelConfig(texts=12, keep=1.0, written=0), llm=KeywordTeacher())  # type: ignore[arg-type]
    assert not any(r["input"] in SPORT for r in read_jsonl(hub_only))


def test_the_file_is_recorded_for_a_resume(tmp_path: Path) -> None:
    from agent.budget import Budget
    from agent.build import Settings, settings_from_config
    from agent.llms import LLMSettings
    from p2m_engine.data.synth import SynthConfig
    from p2m_engine.students.train import TrainConfig

    own = _write(tmp_path / "own.txt", SPORT)
    settings = Settings(llm=LLMSettings(), budget=Budget(), planner="rules", hubs=[], test_path=None, base_model=None,
                        synth=SynthConfig(), train=TrainConfig(), seed=0, unlabelled=own)
    cfg = settings.to_config("prompt")
    assert cfg["unlabelled"] == str(own.resolve())
    assert settings_from_config(cfg).unlabelled == own.resolve()
    assert settings_from_config({k: v for k, v in cfg.items() if k != "unlabelled"}).unlabelled is None


def test_bench_gives_a_task_its_split_without_labels_or_test_inputs(tmp_path: Path) -> None:
    from agent.bench import own_unlabelled
    from p2m_engine.errors import P2MError
    from p2m_engine.eval.bench import BenchTask

    task_dir = tmp_path / "sport_or_weather"
    task_dir.mkdir()
    rows = [{"input": t, "output": "sport"} for t in SPORT] + [{"input": t, "output": "weather"} for t in WEATHER]
    (task_dir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (task_dir / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    task = BenchTask("sport_or_weather", task_dir, task_dir / "prompt.txt", task_dir / "dev.jsonl", None, {})
    path = own_unlabelled(task, "train", tmp_path / "out")
    written = list(read_jsonl(path))
    assert all(set(r) == {"input"} for r in written)
    assert [r["input"] for r in written] == SPORT[2:] + WEATHER
    with pytest.raises(P2MError, match="no validation.jsonl"):
        own_unlabelled(task, "validation", tmp_path / "out")


def test_a_random_sample_of_the_users_texts_comes_before_any_hub_text() -> None:
    import numpy as np

    from p2m_engine.data.pool import PoolText, take

    pool = [PoolText(f"hub {i}", "news/train") for i in range(4)] + [PoolText(f"own {i}", UNLABELLED) for i in range(6)]
    # Hub text 2 is the nearest of all to the one demonstration; own texts are far from it.
    vecs = np.array([[0.5, 0.5], [0.1, 0.9], [1.0, 0.0], [0.0, 1.0]] + [[0.0, 1.0]] * 6, dtype=np.float32)
    demo = np.array([[1.0, 0.0]], dtype=np.float32)
    few = take(pool, vecs, demo, 8, seed=0)
    assert {pool[i].source for i in few[:6]} == {UNLABELLED} and [pool[i].text for i in few[6:]] == ["hub 2", "hub 0"]
    some = take(pool, vecs, demo, 3, seed=0)
    assert len(some) == 3 and all(pool[i].source == UNLABELLED for i in some)
    assert take(pool, vecs, demo, 3, seed=0) == some
    assert any(take(pool, vecs, demo, 3, seed=s) != some for s in range(1, 5))


def test_the_training_record_counts_the_soft_labelled_texts_from_the_users_file(tmp_path: Path) -> None:
    import numpy as np

    from p2m_engine.runs import Run, write_jsonl
    from tools.context import ToolContext
    from tools.train import own_texts

    ctx = ToolContext(run=Run.create(tmp_path / "runs", "t"))
    rows = [{"input": t, "probs": {"sport": 0.9, "weather": 0.1}, "hub": UNLABELLED} for t in SPORT[:3]]
    rows += [{"input": t, "probs": {"sport": 0.1, "weather": 0.9}, "hub": "forecasts/train"} for t in WEATHER[:2]]
    write_jsonl(ctx.run.data("soft_labels"), rows)
    soft = [(r["input"], np.array([0.5, 0.5])) for r in rows[1:]]  # the first held out for validation
    assert own_texts(ctx, soft) == 2 and own_texts(ctx, []) == 0


def test_hub_text_is_also_taken_near_a_label_no_demo_shows(tmp_path: Path) -> None:
    from p2m_engine.data.labelling import label_queries
    from p2m_engine.types import Example, TaskSpec

    money = ["the bank raised interest rates by half a point", "shares fell as the stock market closed lower",
             "the company reported record profits this quarter", "inflation pushed consumer prices up again"]
    spec = TaskSpec("Is this news sentence about sport, the weather or money?",
                    (Example(SPORT[0], "sport"), Example(WEATHER[0], "weather")), "classification",
                    ("sport", "weather", "money"))
    assert label_queries(spec).shape == (1, 384) and label_queries(SPEC).shape == (0, 384)
    folder = tmp_path / "hub" / "news"
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text(json.dumps({"name": "news", "task_type": "generation"}))
    (folder / "train.jsonl").write_text("".join(json.dumps({"input": t, "output": "-"}) + "\n"
                                                for t in SPORT[1:] + WEATHER[1:] + money))
    taken = {}
    for on in (True, False):
        out = tmp_path / f"labelled-{on}.jsonl"
        result = label_texts(spec, [tmp_path / "hub"], out, LabelConfig(texts=6, encoder_texts=0, keep=1.0, label_queries=on))
        taken[on] = {r["input"] for r in read_jsonl(result.soft_path)}
    assert taken[True] & set(money) and not taken[False] & set(money)
