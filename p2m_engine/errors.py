"""Errors p2m raises, each with a message that says what to do next."""


class P2MError(Exception):
    """Base class: a problem the user can fix; the CLI prints it as one line and exits non-zero."""


class TaskSpecError(P2MError):
    """The task prompt cannot be understood (empty, no demonstrations, contradictory...)."""


class LLMError(P2MError):
    """The LLM backend is unreachable, misconfigured or keeps returning unusable answers."""


class LLMAuthError(LLMError):
    """The LLM endpoint rejected the API key: no retry or fallback can help."""


class UnparseableAnswerError(LLMError):
    """The LLM answered, but no answer parsed into the requested structure after the retries: a bad sample or
    batch, which a caller may skip, not a broken service."""


class LLMDeadlineError(LLMError):
    """The LLM service did not answer within its deadline (P2M_LLM_DEADLINE): the service, not the answer, failed."""


class DatasetError(P2MError):
    """A dataset or hub folder is missing, malformed or unusable for the task."""


class ModelError(P2MError):
    """A student model cannot be found or loaded."""


class TrainingError(P2MError):
    """Training cannot start or failed (no data, one label only...)."""


class UnsupportedTaskError(P2MError):
    """The task type is recognised but no student for it exists yet."""


class BudgetExceededError(P2MError):
    """A budget (steps, LLM calls, tokens, time) would be exceeded by the next action."""


class UnsafeNameError(P2MError):
    """A dataset, model or task name cannot become a file name (path traversal, separators, NUL...)."""
