"""Refuse a baseline selection that would not fit in memory, in one line, before it starts.

Without this a pool too large for a method's memory ends with the kernel killing the process (signal 9)
and no message. The estimate is models/baseline_memory.peak_bytes of the method at the pool's size.
"""
import logging

from models.baseline_memory import largest_pool, peak_bytes
from models.baselines import BASELINE_METHODS
from utils.errors import UserError
from utils.logs import LOGGER_NAME
from utils.memory import available_bytes, gigabytes, resident_bytes

log = logging.getLogger(LOGGER_NAME)

HEADROOM = 0.9  # share of the available memory a selection may plan to use (the rest: the OS, other programs)


def check_memory(method, pool, dim, max_memory=None):
    """Raise a UserError when ``method`` on ``pool`` X-rays of size ``dim`` needs more than ``max_memory`` bytes
    (default: the machine's available memory plus what this process holds already: the estimate is of the
    whole process, the pool's table and embeddings included)."""
    needed = peak_bytes(method, pool, dim)
    budget = max_memory if max_memory is not None else int(HEADROOM * available_bytes()) + resident_bytes()
    source = "--max_memory" if max_memory is not None else "available memory"
    if needed <= budget:
        log.info("%s on %d X-rays: about %s of memory (%s: %s)", method, pool, gigabytes(needed), source,
                 gigabytes(budget))
        return
    fits = largest_pool(method, dim, budget)
    others = sorted((peak_bytes(m, pool, dim), m) for m in BASELINE_METHODS if m not in (method, "random"))
    lighter = [f"{m} (about {gigabytes(b)})" for b, m in others if b <= budget][:3]
    advice = (f"select from fewer X-rays with --subsample {fits}" if fits >= 1 else "free some memory")
    advice += f", or use another method: {', '.join(lighter)}" if lighter else ""
    raise UserError(f"method '{method}' on {pool:,} X-rays of size {dim} needs about {gigabytes(needed)} of memory, "
                    f"more than the {gigabytes(budget)} of {source}; {advice}")
