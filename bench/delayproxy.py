#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that delays every chunk by a fixed time each way, and counts
round trips: the local PostgreSQL made to look as far away as a hosted one.

Why: on loopback a round trip costs microseconds, so a tool that talks to the server five
times per migration looks as fast as one that talks once. Against a hosted database
(Supabase, RDS) each round trip costs tens of milliseconds and decides the speed. This
proxy puts that distance back, and its counters tell exactly how often a client waited.

Each chunk read from one side is forwarded to the other at its arrival time + ``delay``:
a queue per direction, drained by one sender that sleeps only until the head chunk is due
and then writes it together with every later chunk already due. Order is preserved and
throughput is not throttled (a burst of chunks is delayed once, not once per chunk), and
the proxy costs next to nothing itself: a client that sends a message in many small writes
is not charged the proxy's per-chunk work, which a real network does not do. The TCP handshake itself is not delayed: a real connection pays one more
round trip before the client's first byte.

Python API (stdlib only; importing this module starts nothing)::

    from delayproxy import DelayProxy, combine

    with DelayProxy(target_port=5432, delay=0.020) as proxy:   # thread, free port
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db?sslmode=disable"
        proxy.reset()                        # zero the counters after any setup
        ...                                  # run the client (any process) against url
        c = proxy.counters()                 # a frozen snapshot, see Counters
        c.round_trips, c.messages.get("Q", 0), c.sync_points, c.connections
    total = combine([c, other])              # snapshots add up: several runs, one total

``DelayProxy.start()`` returns the port (``stop()`` ends it; both are idempotent and the
``with`` block calls them). The proxy also ends by itself after ``lifetime`` seconds, and
its thread is a daemon, so a forgotten proxy never outlives the test or the bench.
``per_connection()`` gives one ``Counters`` per accepted connection, in accept order.

What is counted (see ``Counters``):

* ``round_trips``: the number of times the client sent something and then had to wait for
  the server: a server chunk arriving after one or more client chunks since the previous
  server chunk. Exact for a client that waits for each reply. Pipelined sends merge into
  one round trip only when they reach the proxy before the reply does, which the delay
  guarantees for sends closer together than it; at ``delay=0`` count ``sync_points``.
* ``messages``: PostgreSQL frontend messages by type byte (``Q`` simple query, ``P``/``B``/
  ``E``/``S`` extended protocol, ``X`` terminate, ...), plus ``startup``, ``ssl_request``,
  ``gssenc_request`` and ``cancel_request`` for the untyped ones. Parsing stops when a
  connection switches to TLS or GSS encryption (``encrypted``) or does not look like
  PostgreSQL; pass ``sslmode=disable`` to count everything.
* ``sync_points``: ``Q`` + ``S`` messages: how many times the client asked for a complete
  reply, which for a non-pipelining client is its number of round trips after the
  connection is set up, independent of timing.

Command line (for a proxy in its own process)::

    python3 bench/delayproxy.py --delay-ms 20 --target-port 5432 --lifetime 600

prints ``listening on 127.0.0.1:PORT``, serves until the lifetime ends or SIGINT/SIGTERM,
then prints the counters as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from types import TracebackType

LISTEN_HOST = "127.0.0.1"  # never reachable from another machine
CHUNK = 65536
QUEUE_CHUNKS = 1024  # beyond this a direction stops reading: TCP back-pressure, bounded memory
START_TIMEOUT = 10.0
# How early the sender wakes before a chunk is due; the rest is slept precisely.
_TIMER_SLACK = 0.0015

# Untyped first messages of the PostgreSQL protocol, by their request code.
_UNTYPED = {80877103: "ssl_request", 80877104: "gssenc_request",
            80877102: "cancel_request", 196608: "startup"}
_MAX_MESSAGE = 1 << 30


@dataclass(frozen=True)
class Counters:
    """A snapshot of what went through the proxy (totals, or one connection's)."""

    connections: int = 0
    round_trips: int = 0
    client_chunks: int = 0
    server_chunks: int = 0
    client_bytes: int = 0
    server_bytes: int = 0
    messages: dict[str, int] = field(default_factory=dict)
    encrypted: bool = False  # some connection went TLS/GSS: ``messages`` is incomplete
    delay_applied_max: float = 0.0  # seconds, the worst time a chunk spent in the proxy
    delay_applied_mean: float = 0.0

    @property
    def sync_points(self) -> int:
        return self.messages.get("Q", 0) + self.messages.get("S", 0)

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"sync_points": self.sync_points}


class _Tally:
    """One connection's mutable counters and protocol-parsing state (loop thread only,
    read by ``DelayProxy`` under its lock)."""

    def __init__(self) -> None:
        self.untyped = True  # the protocol starts with length-prefixed untyped messages
        self.answer_pending = False  # an SSL/GSS request waits for its one-byte answer
        self.parsing = True
        self.encrypted = False
        self.closed = False
        self.buffer = bytearray()
        self.zero()

    def zero(self) -> None:
        """Zero the counters but keep the parsing state: the stream goes on."""
        self.round_trips = self.client_chunks = self.server_chunks = 0
        self.client_bytes = self.server_bytes = 0
        self.messages: dict[str, int] = {}
        self.awaiting_reply = False
        self.delays = 0.0
        self.delayed = 0
        self.delay_max = 0.0

    def client_data(self, data: bytes) -> None:
        self.client_chunks += 1
        self.client_bytes += len(data)
        self.awaiting_reply = True
        if self.parsing:
            self.buffer += data
            self._parse()

    def server_data(self, data: bytes) -> None:
        self.server_chunks += 1
        self.server_bytes += len(data)
        if self.awaiting_reply:
            self.round_trips += 1
            self.awaiting_reply = False
        if self.answer_pending:
            self.answer_pending = False
            if data[:1] in (b"S", b"G"):  # the rest of the stream is encrypted
                self.encrypted, self.parsing = True, False
                self.buffer.clear()

    def _parse(self) -> None:
        """Count complete frontend messages in the buffer; stop on anything unexpected."""
        while self.parsing:
            head = 4 if self.untyped else 5
            if len(self.buffer) < head + (4 if self.untyped else 0):
                return
            if self.untyped:
                length, code = struct.unpack_from("!ii", self.buffer)
                name = _UNTYPED.get(code)
                if name is None or not 8 <= length < _MAX_MESSAGE:
                    self.parsing = False
                    return
            else:
                name = chr(self.buffer[0])
                length = struct.unpack_from("!i", self.buffer, 1)[0] + 1
                if not 5 <= length < _MAX_MESSAGE:
                    self.parsing = False
                    return
            if len(self.buffer) < length:
                return
            del self.buffer[:length]
            self.messages[name] = self.messages.get(name, 0) + 1
            if name in ("ssl_request", "gssenc_request"):
                self.answer_pending = True
            elif name == "startup":
                self.untyped = False

    def forwarded(self, late: float) -> None:
        self.delays += late
        self.delayed += 1
        self.delay_max = max(self.delay_max, late)

    def snapshot(self) -> Counters:
        return Counters(1, self.round_trips, self.client_chunks, self.server_chunks,
                        self.client_bytes, self.server_bytes, dict(self.messages),
                        self.encrypted, self.delay_max,
                        self.delays / self.delayed if self.delayed else 0.0)


def combine(parts: Iterable[Counters]) -> Counters:
    """One total of several snapshots: of several connections, or of several runs."""
    parts = list(parts)
    messages: dict[str, int] = {}
    for part in parts:
        for name, count in part.messages.items():
            messages[name] = messages.get(name, 0) + count
    chunks = sum(p.client_chunks + p.server_chunks for p in parts)
    weighted = sum(p.delay_applied_mean * (p.client_chunks + p.server_chunks) for p in parts)
    return Counters(
        connections=sum(p.connections for p in parts),
        round_trips=sum(p.round_trips for p in parts),
        client_chunks=sum(p.client_chunks for p in parts),
        server_chunks=sum(p.server_chunks for p in parts),
        client_bytes=sum(p.client_bytes for p in parts),
        server_bytes=sum(p.server_bytes for p in parts), messages=messages,
        encrypted=any(p.encrypted for p in parts),
        delay_applied_max=max((p.delay_applied_max for p in parts), default=0.0),
        delay_applied_mean=weighted / chunks if chunks else 0.0)


class DelayProxy:
    """Forward 127.0.0.1:``port`` to ``target_host:target_port``, ``delay`` seconds late
    each way. Runs its own event loop in a daemon thread between ``start`` and ``stop``."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432,
                 delay: float = 0.0, *, port: int = 0, lifetime: float = 600.0) -> None:
        if delay < 0 or lifetime <= 0:
            raise ValueError("delay must be >= 0 and lifetime > 0")
        self.target_host, self.target_port = target_host, target_port
        self.delay, self.lifetime = delay, lifetime
        self.port = port  # 0 until start() when a free port is asked for
        self._tallies: list[_Tally] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- the API ---------------------------------------------------------------------

    def start(self) -> int:
        """Listen (on a free port unless one was given) and serve in a thread; the port."""
        if self._thread is not None:
            return self.port
        self._thread = threading.Thread(target=self._run_thread, name="delayproxy",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"delay proxy did not start: {self._error!r}")
        return self.port

    def stop(self) -> None:
        """Close the listener and every open connection; wait for the thread to end."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)

    def counters(self) -> Counters:
        """Totals over every connection since start or the last ``reset``."""
        return combine(self.per_connection())

    def per_connection(self) -> list[Counters]:
        with self._lock:
            return [t.snapshot() for t in self._tallies]

    def reset(self) -> None:
        """Forget closed connections and zero the counters of open ones, which stay
        counted (``connections`` includes them) from here on."""
        with self._lock:
            self._tallies = [t for t in self._tallies if not t.closed]
            for tally in self._tallies:
                tally.zero()

    def __enter__(self) -> DelayProxy:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the loop ----------------------------------------------------------------------

    def _run_thread(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # reported by start(), or lost with the daemon thread
            self._error = exc
            self._ready.set()

    async def serve(self, on_ready: threading.Event | None = None) -> None:
        """Serve until ``stop`` or the lifetime ends; usable in any event loop's thread."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await self._connection(reader, writer)
            except asyncio.CancelledError:
                # Shutdown: end normally, since the streams callback of Python 3.11 calls
                # exception() on this task, which re-raises when it was cancelled.
                pass
            finally:
                handlers.discard(task)

        server = await asyncio.start_server(accepted, LISTEN_HOST, self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        if on_ready is not None:
            on_ready.set()
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.lifetime)
        finally:
            server.close()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()

    async def _connection(self, client_r: asyncio.StreamReader,
                          client_w: asyncio.StreamWriter) -> None:
        tally = _Tally()
        try:
            server_r, server_w = await asyncio.open_connection(self.target_host,
                                                               self.target_port)
        except OSError:
            client_w.close()
            return
        with self._lock:
            self._tallies.append(tally)
        pumps = [asyncio.create_task(self._pump(client_r, server_w, tally, True)),
                 asyncio.create_task(self._pump(server_r, client_w, tally, False))]
        try:
            # A reset on one side ends both directions, as a broken network path would.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            with self._lock:
                tally.closed = True
            for writer in (client_w, server_w):
                writer.close()
            for writer in (client_w, server_w):
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    tally: _Tally, from_client: bool) -> None:
        """Read one direction, stamping each chunk with its due time; a sender task
        forwards each when due, so chunks overlap their delays instead of adding them."""
        loop = asyncio.get_running_loop()
        line = _Line()
        sender = asyncio.create_task(self._send(line, writer, tally))
        try:
            while True:
                data = await reader.read(CHUNK)
                due = loop.time() + self.delay
                if data:
                    with self._lock:
                        (tally.client_data if from_client else tally.server_data)(data)
                await line.put(due, data)
                if not data:
                    break
            await sender
        finally:
            sender.cancel()

    async def _send(self, line: _Line, writer: asyncio.StreamWriter, tally: _Tally) -> None:
        """Forward each chunk when due, and with it every later chunk already due: one
        write, as a receiver's kernel hands over segments that arrived together. The
        event loop's timers wake up to a millisecond late (epoll counts whole
        milliseconds), so the sender wakes just before the due time and sleeps the rest
        precisely: the proxy adds the delay asked for, not its own overhead."""
        loop = asyncio.get_running_loop()
        while True:
            due = await line.head_due()
            wait = due - loop.time()
            if wait > _TIMER_SLACK:
                await asyncio.sleep(wait - _TIMER_SLACK)
                wait = due - loop.time()
            if wait > 0:
                time.sleep(wait)  # under _TIMER_SLACK: precise, and briefly blocking
            now = loop.time()
            chunks = line.take_due(now)
            data = b"".join(chunk for _, chunk in chunks)
            if data:
                writer.write(data)
                with self._lock:
                    for chunk_due, chunk in chunks:
                        if chunk:
                            tally.forwarded(now - chunk_due + self.delay)
            if not chunks[-1][1]:  # end of stream: half-close, as the sending side did
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            await writer.drain()


class _Line:
    """One direction's chunks in flight, oldest first: an asyncio queue that can hand
    over every chunk already due at once. Bounded: a full line stops its reader (TCP
    back-pressure, bounded memory)."""

    def __init__(self) -> None:
        self._chunks: collections.deque[tuple[float, bytes]] = collections.deque()
        self._filled = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()

    async def put(self, due: float, data: bytes) -> None:
        await self._drained.wait()
        self._chunks.append((due, data))
        self._filled.set()
        if len(self._chunks) >= QUEUE_CHUNKS:
            self._drained.clear()

    async def head_due(self) -> float:
        await self._filled.wait()
        return self._chunks[0][0]

    def take_due(self, now: float) -> list[tuple[float, bytes]]:
        """The head chunk and every chunk after it due by ``now``, up to an end of stream."""
        taken = [self._chunks.popleft()]
        while self._chunks and taken[-1][1] and self._chunks[0][0] <= now:
            taken.append(self._chunks.popleft())
        if not self._chunks:
            self._filled.clear()
        self._drained.set()
        return taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=20.0,
                        help="delay each way in milliseconds (RTT is twice this)")
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--target-port", type=int, default=5432)
    parser.add_argument("--port", type=int, default=0, help="listen port (default: free)")
    parser.add_argument("--lifetime", type=float, default=600.0,
                        help="seconds after which the proxy exits by itself")
    args = parser.parse_args(argv)
    proxy = DelayProxy(args.target_host, args.target_port, args.delay_ms / 1000.0,
                       port=args.port, lifetime=args.lifetime)
    ready = threading.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(proxy.serve(ready))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, proxy.stop)
        while not ready.is_set() and not task.done():
            await asyncio.sleep(0.01)
        if ready.is_set():
            print(f"listening on {LISTEN_HOST}:{proxy.port}", flush=True)
        await task

    asyncio.run(run())
    print(json.dumps(proxy.counters().to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
