"""A TLS front for the Tansu broker, as a load balancer or stunnel terminates TLS in front of a
broker: Tansu 0.6's command line cannot turn its own TLS on (``--cert`` and ``--key`` are in
one exclusive group), so the tests put this proxy between a TLS client and the broker."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading


class TlsProxy:
    def __init__(self, port: int, target_port: int, context: ssl.SSLContext) -> None:
        self.port = port
        self.target_port = target_port
        self.context = context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tls-proxy")
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.context)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
        writer.close()
