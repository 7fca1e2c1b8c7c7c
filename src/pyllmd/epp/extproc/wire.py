"""Builders and readers of ext_proc protobuf messages (xds-protos), kept apart from the logic.

The servicer in `servicer.py` decides; this module only turns its decisions into
`ProcessingResponse` messages and reads headers and filter metadata out of
`ProcessingRequest`s.

Messages are filled in place (`msg.field.sub = x`) rather than built from nested
constructors: with the upb runtime that is several times cheaper, and these run
a few times per routed request.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2

from pyllmd.epp.requests import DESTINATION_HEADER, EppError

ProcessingRequest = Any  # generated protobuf classes carry no type information
ProcessingResponse = Any

LB_NAMESPACE = "envoy.lb"
SUBSET_NAMESPACE = "envoy.lb.subset_hint"
SUBSET_KEY = "x-gateway-destination-endpoint-subset"
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"


def header_map(headers: Any) -> dict[str, str]:
    """An Envoy `HeaderMap` as a dict (raw_value when non-empty, else value; last one wins)."""
    out: dict[str, str] = {}
    for h in headers.headers:
        out[h.key] = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
    return out


def subset_hint(request: ProcessingRequest) -> list[str] | None:
    """The `envoy.lb.subset_hint` endpoint list, or None when namespace or key is absent."""
    md = request.metadata_context.filter_metadata
    if SUBSET_NAMESPACE not in md:
        return None
    fields = md[SUBSET_NAMESPACE].fields
    if SUBSET_KEY not in fields:
        return None
    value = fields[SUBSET_KEY]
    if value.WhichOneof("kind") != "list_value":
        return []
    return [
        v.string_value for v in value.list_value.values if v.WhichOneof("kind") == "string_value"
    ]


def _set_headers(mutation: Any, headers: Iterable[tuple[str, str]]) -> None:
    mutation.SetInParent()  # present even when empty, as a constructed message is
    add = mutation.set_headers.add
    for k, v in headers:
        header = add().header
        header.key = k
        header.raw_value = v.encode()


def request_headers_response(
    headers: Iterable[tuple[str, str]], destination: str | None
) -> ProcessingResponse:
    """The deferred request-headers answer: route-cache clear, header mutation, `envoy.lb`."""
    response = pb.ProcessingResponse()
    common = response.request_headers.response
    common.clear_route_cache = True
    _set_headers(common.header_mutation, headers)
    if destination is not None:
        response.dynamic_metadata.CopyFrom(_destination_struct(destination))
    return response


def destination_metadata(destination: str) -> struct_pb2.Struct:
    """`{"envoy.lb": {"x-gateway-destination-endpoint": destination}}` as a Struct."""
    md = struct_pb2.Struct()
    md.update({LB_NAMESPACE: {DESTINATION_HEADER: destination}})
    return md


@functools.lru_cache(maxsize=4096)
def _destination_struct(destination: str) -> struct_pb2.Struct:
    """`destination_metadata`, built once per destination (callers copy it, never mutate)."""
    return destination_metadata(destination)


def request_body_response(chunk: bytes, end_of_stream: bool) -> ProcessingResponse:
    """One streamed piece of the (possibly mutated) request body."""
    response = pb.ProcessingResponse()
    _streamed(response.request_body, chunk, end_of_stream)
    return response


def response_body_response(chunk: bytes, end_of_stream: bool) -> ProcessingResponse:
    """One streamed piece of the response body."""
    response = pb.ProcessingResponse()
    _streamed(response.response_body, chunk, end_of_stream)
    return response


def _streamed(body: Any, chunk: bytes, end_of_stream: bool) -> None:
    piece = body.response.body_mutation.streamed_response
    piece.SetInParent()
    piece.body = chunk
    piece.end_of_stream = end_of_stream


def response_headers_response(headers: Iterable[tuple[str, str]]) -> ProcessingResponse:
    """The response-headers answer with its header mutation."""
    response = pb.ProcessingResponse()
    _set_headers(response.response_headers.response.header_mutation, headers)
    return response


def request_trailers_response() -> ProcessingResponse:
    """An empty answer to request trailers (FULL_DUPLEX_STREAMED waits for one)."""
    return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())


def response_trailers_response() -> ProcessingResponse:
    """An empty answer to response trailers."""
    return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())


def immediate_response(error: EppError) -> ProcessingResponse:
    """The error answer sent to the client instead of forwarding the request."""
    return pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=error.status), body=error.body
        )
    )


def headers_of(response: ProcessingResponse, phase: str) -> Mapping[str, str]:
    """The `set_headers` of a headers response (`request_headers`/`response_headers`), for tests."""
    mutation = getattr(response, phase).response.header_mutation
    return {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}
