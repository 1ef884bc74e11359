"""How many times each probe module has been executed in this process, host and sandboxes alike.

The probes import this module passed through the workflow sandbox, so every sandbox that
loads a probe counts in the host's copy (tests/test_worker_checks.py).
"""

from __future__ import annotations

from collections import Counter

loads: Counter[str] = Counter()
