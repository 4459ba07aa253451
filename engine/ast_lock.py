"""One lock for every use of Python's ``ast`` module in the engine.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, and
threads that build ASTs at the same time can corrupt it: ``SystemError: AST constructor
recursion depth mismatch`` (python/cpython gh-106905, fixed in 3.12). The local stack runs
tools on several poller threads and the HTTP API validates graphs on a thread pool, so
everything that parses or compiles Python source (conditions, the code-review tools, and
the radon and pyflakes calls they make) holds this lock while it does.
"""

from __future__ import annotations

import threading

AST_LOCK = threading.RLock()
