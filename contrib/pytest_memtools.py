"""pytest plugin for memtools: marks each test as a phase of the recording.

Under ``memtools-user record -- pytest ...`` the recorder passes the path of a FIFO in the
environment variable ``MEMTOOLS_PHASES``; this plugin writes ``begin NODEID`` before each test
and ``end NODEID`` after it, so a leak is attributed to the tests during which memory grew
(``show``, the reports and the GUI name them). Outside memtools it does nothing.

Use it without installing anything: put this file on ``PYTHONPATH`` and run
``pytest -p pytest_memtools``, or copy it next to your tests and add
``pytest_plugins = ["pytest_memtools"]`` to ``conftest.py``. Works with pytest-xdist: each
worker writes its own lines, and lines this short are never interleaved in a FIFO.
"""

import os

import pytest

_ENV = "MEMTOOLS_PHASES"
_fd = None


def _write(line):
    """Writes one protocol line; never fails a test because memtools went away."""
    global _fd
    path = os.environ.get(_ENV)
    if not path:
        return
    if _fd is None:
        try:
            # Non-blocking: if the recorder is gone, the test run goes on.
            _fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            _fd = -1
    if _fd < 0:
        return
    data = (" ".join(line.split())[:4000] + "\n").encode("utf-8", "replace")
    try:
        os.write(_fd, data)
    except OSError:
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _write("begin " + item.nodeid)
    yield
    _write("end " + item.nodeid)
