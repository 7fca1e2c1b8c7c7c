"""One TCP port for REST and gRPC, as the simulator serves them (spec §2.1, §11.1).

Each accepted connection is classified by its first bytes, read with
`MSG_PEEK` so nothing is consumed: the HTTP/2 client preface means gRPC
(cleartext, also when REST is served over TLS, as upstream), anything else
is handed to aiohttp with `connect_accepted_socket` (with TLS when
configured), so REST traffic pays one peek per connection and no copying.
gRPC connections are spliced to a `grpc.aio` server bound on a private
loopback port, because grpcio cannot adopt an accepted socket.

Hand-written: the Go simulator uses cmux; no Python library multiplexes an
asyncio listener by protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

log = logging.getLogger(__name__)

__all__ = ["PREFACE", "PortMux", "classify"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FIRST_BYTES_TIMEOUT = 30.0  # seconds a connection may stay silent before it is dropped
PIPE_CHUNK = 65536


def classify(head: bytes) -> str | None:
    """'grpc', 'http', or None while `head` is still a prefix of the HTTP/2 preface."""
    if head.startswith(PREFACE):
        return "grpc"
    if PREFACE.startswith(head):
        return None
    return "http"


class PortMux:
    """Accepts on `sock` and routes each connection to REST or gRPC."""

    def __init__(
        self,
        sock: socket.socket,
        http_factory: Callable[[], asyncio.BaseProtocol],
        grpc_target: tuple[str, int] | None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.sock = sock
        self.http_factory = http_factory
        self.grpc_target = grpc_target
        self.ssl_context = ssl_context
        self._accepting: asyncio.Task[None] | None = None
        self._routing: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self.sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept(), name="port mux")

    async def stop_accepting(self) -> None:
        """Close the listener; connections already routed or spliced carry on."""
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
        self.sock.close()

    async def close(self) -> None:
        """Stop accepting and drop connections not yet routed or being spliced."""
        tasks = [t for t in (self._accepting, *self._routing) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sock.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except OSError as err:  # e.g. EMFILE: do not spin
                log.warning("accept failed: %s", err)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = loop.create_task(self._route(conn))
            self._routing.add(task)
            task.add_done_callback(self._routing.discard)

    async def _route(self, conn: socket.socket) -> None:
        try:
            kind = await asyncio.wait_for(self._sniff(conn), FIRST_BYTES_TIMEOUT)
        except (TimeoutError, OSError):
            conn.close()
            return
        if kind is None:  # closed before a byte arrived
            conn.close()
            return
        if kind == "grpc" and self.grpc_target is not None:
            await self._splice(conn, self.grpc_target)
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(self.http_factory, conn, ssl=self.ssl_context)
        except (OSError, ssl.SSLError) as err:  # e.g. a plain request on a TLS port
            log.debug("connection dropped before HTTP: %s", err)
            conn.close()

    async def _sniff(self, conn: socket.socket) -> str | None:
        loop = asyncio.get_running_loop()
        while True:
            await _readable(loop, conn)
            head = conn.recv(len(PREFACE), socket.MSG_PEEK)
            if not head:
                return None
            kind = classify(head)
            if kind is not None:
                return kind
            await asyncio.sleep(0.005)  # a partial preface stays readable: do not spin

    async def _splice(self, conn: socket.socket, target: tuple[str, int]) -> None:
        try:
            down_r, down_w = await asyncio.open_connection(sock=conn)
            up_r, up_w = await asyncio.open_connection(*target)
        except OSError as err:
            log.warning("gRPC backend unreachable: %s", err)
            conn.close()
            return
        pipes = [_pipe(down_r, up_w), _pipe(up_r, down_w)]
        try:
            await asyncio.gather(*pipes)
        finally:
            for writer in (up_w, down_w):
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()


async def _readable(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(PIPE_CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
