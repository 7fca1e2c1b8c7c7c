"""Tests run in any file order (pytest-xdist): a command's logging set-up does not leak.

The two tests run in this order (pytest keeps a file's order, also under
`--dist loadfile`): the first leaves the root logger as an in-process command does,
on a stream that is closed afterwards; the second logs and must not see the stale
handler complain on its stderr.
"""

from __future__ import annotations

import io
import logging

import pytest

from pyllmd.core import logging as pylog


def test_a_command_sets_up_logging_on_a_stream_closed_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    pylog.setup(2)
    logging.getLogger("pyllmd.test").info("logged while the stream is open")
    assert "logged while the stream is open" in stream.getvalue()
    stream.close()  # as pytest closes a test's capture stream


def test_a_later_test_logs_without_a_logging_error(capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("pyllmd.test").warning("a later test logs")
    assert "Logging error" not in capsys.readouterr().err
