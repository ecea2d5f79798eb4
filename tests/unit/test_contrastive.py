"""SetFit's contrastive step before the frozen-encoder student's head: which texts, which pairs, and that the tuned
encoder draws a label's texts together."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from p2m_engine.students import probe_student
from p2m_engine.students.contrastive import ContrastiveConfig, confident, pairs, tune_encoder
from p2m_engine.students.embeddings import packaged_minilm_path


def test_confident_takes_each_labels_rows_with_the_widest_margin() -> None:
    targets = np.array([[0.5, 0.3, 0.2],    # label 0, margin 0.2
                        [0.9, 0.05, 0.05],  # label 0, margin 0.85
                        [0.4, 0.35, 0.25],  # label 0, margin 0.05
                        [0.1, 0.6, 0.3],    # label 1, margin 0.3
                        [0.3, 0.3, 0.4]])   # label 2, margin 0.1
    assert confident(targets, 2) == [1, 0, 3, 4]
    assert confident(targets, 0) == [] and confident(np.zeros((0, 3)), 2) == []


def test_pairs_draw_one_same_label_and_one_other_label_text_per_text_and_iteration() -> None:
    rows = [("a1", 0), ("a2", 0), ("b1", 1), ("b2", 1), ("c1", 2)]
    drawn = pairs(rows, iterations=3, seed=1)
    label = dict(rows)
    # c1 has no other text of its label: no positive pair for it.
    assert len(drawn) == 3 * (4 * 2 + 1)
    assert all((label[a] == label[b]) == (target == 1.0) and a != b for a, b, target in drawn)
    assert sum(t == 1.0 for _, _, t in drawn) == 12 and pairs(rows, 3, seed=1) == drawn


def _gap(encoder: Path, sport: list[str], weather: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(encoder), device="cpu")
    a, b = (model.encode(x, normalize_embeddings=True) for x in (sport, weather))
    within = (np.mean(a @ a.T) + np.mean(b @ b.T)) / 2
    return float(within - np.mean(a @ b.T))


def test_the_tuned_encoder_draws_each_labels_texts_together_and_the_probe_reads_it_in_place(tmp_path: Path) -> None:
    sport = ["the striker scored twice in the final", "the keeper saved a late penalty", "the champion won in straight sets"]
    weather = ["heavy rain is expected tomorrow", "snow will fall in the hills overnight", "strong winds bring hail on friday"]
    rows = [(t, 0) for t in sport] + [(t, 1) for t in weather]
    out = tmp_path / "student"
    seen: list[tuple[int, int]] = []
    result = tune_encoder(packaged_minilm_path(), rows, out, ContrastiveConfig(iterations=4, learning_rate=1e-4),
                          progress=lambda done, total: seen.append((done, total)))
    assert result.encoder == out and result.rows == 6 and result.pairs == 48 and seen[-1] == (48, 48)
    assert _gap(out, sport, weather) > _gap(packaged_minilm_path(), sport, weather) + 0.05
    # The head is trained on the tuned encoder where it lies (no copy of the packaged one over it).
    trained = probe_student.train_probe_student(sport + weather, np.eye(2)[[0, 0, 0, 1, 1, 1]], ("sport", "weather"),
                                                out, out, val=[("the team lost the derby", "sport")])
    assert trained.val_score == 1.0
    assert _gap(out, sport, weather) > _gap(packaged_minilm_path(), sport, weather) + 0.05
