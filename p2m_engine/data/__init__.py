"""Data for a task: the hub and catalog, retrieval and its fit test, real text labelled by judges, generation and its filters, the data card."""
