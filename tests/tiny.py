"""Tiny models built from a config (the shapes of TRL's tiny test models), for tests and benchmark scripts."""

from __future__ import annotations

from pathlib import Path


def tiny_bert(folder: Path, hidden: int = 8, max_positions: int = 128) -> Path:
    """A 2-layer BERT of width `hidden`, built from a config, saved with the packaged MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from p2m_engine.students.embeddings import packaged_minilm_path

    tok = AutoTokenizer.from_pretrained(str(packaged_minilm_path()))
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=max_positions)
    BertModel(config).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder
