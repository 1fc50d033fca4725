"""Lightning's notices that are noise in a melp run, silenced one by one (never a blanket filter).

- its promotional tips ("💡 Tip: ... litlogger / litmodels"), logged at INFO on rank zero;
- torch's FutureWarning that ``LeafSpec`` is deprecated, raised by Lightning's own ``_pytree``
  code: nothing a melp user can act on.
"""
from __future__ import annotations

import logging
import warnings

RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


_NO_TIPS = _NoTips()


def quiet_lightning() -> None:
    """Install the filters (idempotent)."""
    for name in RANK_ZERO_LOGGERS:
        logging.getLogger(name).addFilter(_NO_TIPS)  # a filter already there is not added twice
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
