"""Measurements: metrics, failure analysis, baselines, the teacher check and the benchmark."""
