"""The per-stream state of the ext_proc servicer, one part at a time."""

from __future__ import annotations

from pyllmd.epp.extproc.stream import Ledger, RequestIntake, ResponseTally, StreamState
from pyllmd.epp.requests import ParsedRequest, Usage

USAGE = b'"usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}'


def test_intake_hands_over_the_body_once_and_prefers_the_client_request_id() -> None:
    intake = RequestIntake(headers={"X-Request-Id": "client-1"}, generated_id="made-up")
    intake.body += b'{"model":'
    intake.body += b' "m"}'
    assert intake.take_body() == b'{"model": "m"}'
    assert intake.done and intake.body == b""
    assert intake.request_id() == "client-1"
    assert RequestIntake(generated_id="made-up").request_id() == "made-up"


def test_json_response_is_returned_whole_at_its_end_with_its_usage() -> None:
    tally = ResponseTally()
    assert tally.add(b'{"id": "x", ', False) == (None, None)
    body = b'{"id": "x", ' + USAGE + b"}"
    usage, whole = tally.add(USAGE + b"}", True)
    assert whole == body
    assert usage == Usage(3, 2, 5)
    assert tally.size == len(body) and tally.usage == usage


def test_sse_usage_is_reported_once_when_done_arrives() -> None:
    tally = ResponseTally(streaming=True)
    event = b"data: {" + USAGE + b"}\n\n"
    assert tally.add(event, False) == (None, None)  # usage seen, not reported before [DONE]
    usage, whole = tally.add(b"data: [DONE]\n\n", False)
    assert usage == Usage(3, 2, 5) and whole is None
    assert tally.add(b"", True) == (None, None)  # end of stream: already reported
    assert tally.usage == usage


def test_stream_models_come_from_the_parsed_request() -> None:
    stream = StreamState(Ledger(received_at=1.0))
    assert stream.models == ("", "")
    stream.parsed = ParsedRequest({}, "incoming", "target", "completions")
    assert stream.models == ("incoming", "target")
    assert not stream.ledger.completed and stream.ledger.error_code is None
