"""pytest plugin: nbval compares notebook outputs at the precision they mean (scripts/output_precision.py).

nbval compares sanitized strings with ``!=``; this wraps each sanitized string in ``PrecisionText``, whose
equality allows the drift of deterministic arithmetic across CPUs and nothing more. Loaded with ``-p``.
"""

from nbval.plugin import IPyNbCell
from output_precision import PrecisionText

_sanitize = IPyNbCell.sanitize


def _sanitize_to_precision(self, s):
    sanitized = _sanitize(self, s)
    return PrecisionText(sanitized) if isinstance(sanitized, str) else sanitized


def pytest_configure(config):
    IPyNbCell.sanitize = _sanitize_to_precision
