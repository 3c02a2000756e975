"""After fork(), the child can use its Database even if another thread of the parent
held the cache lock at the moment of the fork (gunicorn --preload, multiprocessing's
fork start method).

The other thread holds the store's lock until an event the parent sets after the
fork, so the child is always forked with the lock held. The parent waits for the
child with a deadline and kills it if it hangs.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

import dal
from tests.models import Users
from tests.test_bus import MakeDb, bus_stats, make_bus_db, seed
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a threaded process may deadlock the child:
    # the hazard these tests show dal handles.
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
]

__all__ = ["make_bus_db"]  # a fixture

#: Seconds the parent waits for the child before calling it hung.
DEADLINE = 30.0


@contextmanager
def _lock_held_by_another_thread(db: dal.Database) -> Iterator[None]:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db._store.lock:
            held.set()
            release.wait(DEADLINE)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def _fork(child: Callable[[], None]) -> int:
    """Run ``child()`` in a forked process; its exit code (killed if it hangs)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            child()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _wait(pid: int) -> int:
    status: list[int] = []

    def exited() -> bool:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status.append(code)
        return bool(done)

    try:
        wait_until(exited, timeout=DEADLINE)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"the forked child hung for {DEADLINE} s") from None
    return os.waitstatus_to_exitcode(status[0])


def test_a_child_forked_while_another_thread_holds_the_lock_reads_writes_and_exits(
    db: dal.Database,
) -> None:
    users = Users(db)
    users.add(id=1, email="a@example.com", name="A")
    assert users.get(1).name == "A"  # cached in the parent, and a pooled connection
    connects = db.stats()["pool"]["connects"]

    def child() -> None:
        assert db.stats()["cache"]["currsize"] == 0  # nothing inherited
        assert db.stats()["cache"]["in_flight"] == 0
        assert users.get(1).name == "A"  # read: a miss, on the child's own connection
        assert users.update(1, name="child").name == "child"  # write
        assert users.get(1).name == "child"
        with db.session() as session:  # sessions and their lock work too
            assert session.get(Users.model, 1).name == "child"
        assert db.stats()["pool"]["connects"] > connects  # not the parent's connections
        db.close()

    with _lock_held_by_another_thread(db):
        pid = _fork(child)
    assert _wait(pid) == 0

    # The parent's pooled connections were left alone: its next miss reads on one.
    assert users.get(2) is None
    assert db.stats()["pool"]["retries"] == 0
    assert db.stats()["pool"]["connects"] == connects


def test_with_the_bus_the_child_listens_and_publishes_for_itself(make_bus_db: MakeDb) -> None:
    db = make_bus_db()
    users = Users(db)
    seed(users)
    assert users.get(2).name == "user2"  # cached in the parent

    def child() -> None:
        wait_until(lambda: bus_stats(db)["state"] == "listening")
        assert users.get(1).name == "user1"
        users.update(2, name="from the child")
        db.close()

    with _lock_held_by_another_thread(db):
        pid = _fork(child)
    assert _wait(pid) == 0

    wait_until(lambda: users.get(2).name == "from the child")  # the child's NOTIFY
    # The child left the listener connection it inherited to the parent.
    assert bus_stats(db)["state"] == "listening" and bus_stats(db)["reconnects"] == 0
