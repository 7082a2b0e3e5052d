"""Coalescer: a burst of requests from many threads costs few runs, and none is lost."""
import threading
import time

from alwidget._coalesce import Coalescer


def test_requests_during_a_run_merge_into_one_more_run():
    runs, started, release = [], threading.Event(), threading.Event()

    def work():
        runs.append(time.monotonic())
        if len(runs) == 1:
            started.set()
            release.wait(5)

    c = Coalescer(work)
    first = threading.Thread(target=c.request)
    first.start()
    started.wait(5)
    for _ in range(20):  # these return at once: the running caller will run again
        c.request()
    release.set()
    first.join(5)
    assert len(runs) == 2


def test_a_request_while_held_runs_on_exit_and_stops_when_dead():
    runs = []
    alive = [True]
    c = Coalescer(lambda: runs.append(1), alive=lambda: alive[0])
    with c.held():
        threading.Thread(target=c.request).start()
        time.sleep(0.1)
        assert runs == []
    assert runs == [1]
    alive[0] = False
    c.request()
    assert runs == [1]
