"""Fixtures for every unit test.

A command run in-process (`pyllmd.cli.main([...])`) configures the root logger the way
the real process does (`pyllmd.core.logging.setup`): one handler on the `sys.stderr` of
that moment, which in a test is a capture stream closed when the test ends. Left in
place, that handler makes a later test's log record print "--- Logging error ---" into
that test's stderr, so whether a test passes would depend on which test file ran before
it in the same process (pytest-xdist's `--dist loadfile` orders files per worker).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Drop the root handlers a test's command installed; put the root level back."""
    root = logging.getLogger()
    level = root.level
    yield
    # pytest's own handlers are subclasses (LogCaptureHandler, a NullHandler) and it
    # removes them itself; `setup` installs a plain StreamHandler.
    for handler in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(handler)
    root.setLevel(level)
