"""One lock for every use of Python's ``ast`` module in the engine.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, and
threads that build ASTs at the same time can corrupt it: ``SystemError: AST constructor
recursion depth mismatch`` (python/cpython gh-106905, fixed in 3.12). The local stack runs
tools on several poller threads and the HTTP API validates graphs on a thread pool, so
everything that parses or compiles Python source holds this lock while it does.

Hold it around each parse or compile call and nothing else (a condition of at most 1,000
characters; one file of the code-review tools; one string annotation in pyflakes), never
around a whole analysis: every other run's conditions wait for it, and a review that held it
for seconds would stall them all.
"""

from __future__ import annotations

import threading

AST_LOCK = threading.RLock()
