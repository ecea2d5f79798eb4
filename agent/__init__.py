"""The p2m agent: a LangGraph state machine whose planner picks the next tool, plus the CLI."""
