"""Run a Python module as a child process that dies with its parent: `python -m p2m_engine.llm.child PPID MODULE ARGS...`.

p2m starts the embedded LLM server as a child process. When p2m is killed (kill -9, the OOM killer, a CI
timeout) its cleanup never runs, and the server would live on, holding a GB of memory and, mid-request, the
CPU. On Linux the kernel kills this process (SIGKILL) when its parent dies (PR_SET_PDEATHSIG); elsewhere the
module just runs. The parent must start it from a thread that lives as long as the child should (the main one).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, module, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if sys.platform.startswith("linux"):
        import ctypes

        # SIGKILL, not SIGTERM: the server's graceful shutdown would first finish a generation nobody waits for.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before the line above took effect
        sys.exit(0)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
