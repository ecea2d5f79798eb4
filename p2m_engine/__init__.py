"""p2m engine: plain functions that parse a task, find data, generate data, train and evaluate.

Nothing here imports LangGraph or LangChain: every stage works from a script or a notebook.
"""
