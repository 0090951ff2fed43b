import threading

import pytest

from data.prefetch import prefetched


def test_results_in_order_and_drawn_ahead_in_another_thread():
    threads = []

    def draw(i):
        threads.append(threading.current_thread().name)
        return i * i

    assert list(prefetched(draw, range(6))) == [0, 1, 4, 9, 16, 25]
    assert all(name.startswith("draw-tasks") for name in threads)
    assert list(prefetched(draw, [])) == []


def test_errors_reach_the_caller():
    def draw(i):
        if i == 2:
            raise ValueError("bad task")
        return i

    results = prefetched(draw, range(5))
    assert next(results) == 0 and next(results) == 1
    with pytest.raises(ValueError, match="bad task"):
        next(results)
