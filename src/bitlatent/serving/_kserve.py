"""Import kserve with an empty command line: ``kserve.model_server`` parses ``sys.argv`` when it
is imported (its own server flags), which would read ours, or pytest's, as its own."""

from __future__ import annotations

import sys

_argv = sys.argv
sys.argv = _argv[:1]
try:
    import kserve  # noqa: F401
    import kserve.errors  # noqa: F401
    import kserve.protocol.infer_type  # noqa: F401
finally:
    sys.argv = _argv

__all__ = ["kserve"]
