"""A TCP proxy that can turn every connection it carries into a black hole.

``cut()`` is what a NAT or load balancer that forgets a flow does to both ends: nothing passes
any more, in either direction, and nothing is closed either — the sockets stay ESTABLISHED and
the kernel keeps acknowledging what the node sends, so the node sees no error, only silence.
Connections opened after the cut are forwarded normally (the NAT makes a new entry), which is
how a node that notices the silence heals: it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib


class BlackholeProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._held: list[asyncio.StreamWriter] = []  # cut connections, kept open on purpose
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    async def start(self) -> BlackholeProxy:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_writer.close()
            return
        writers = (client_writer, upstream_writer)
        for source, sink in ((client_reader, upstream_writer), (upstream_reader, client_writer)):
            task = asyncio.create_task(self._pump(source, sink, writers))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, writers: tuple[asyncio.StreamWriter, ...]
    ) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:  # cut: leave both sockets open, silent
            self._held.extend(writers)
            raise
        for writer in writers:  # one side closed: close the other, as a proxy does
            writer.close()

    def cut(self) -> int:
        """Black-hole every connection open now; return how many pumps were stopped."""
        pumps = list(self._pumps)
        for task in pumps:
            task.cancel()
        return len(pumps)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in self._held:
            with contextlib.suppress(Exception):
                writer.close()
