"""Drawing the next batch of tasks on the CPU while the device trains on the current one."""
from concurrent.futures import ThreadPoolExecutor


def prefetched(draw, items):
    """Yield ``draw(item)`` for each item, computing the next one in a background thread.

    Results come in order and are the same as without prefetching (``draw`` must
    depend on its argument only, as task drawing does). While the main thread
    waits for the device at the end of a training step, the thread draws the
    next batch, so on a GPU the CPU-side task drawing costs no step time.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="draw-tasks") as pool:
        pending = None
        for item in items:
            upcoming = pool.submit(draw, item)
            if pending is not None:
                yield pending.result()
            pending = upcoming
        if pending is not None:
            yield pending.result()
