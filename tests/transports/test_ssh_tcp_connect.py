"""The SSH transport's own TCP connect: an IP literal needs no resolver (asyncio would run
one in a worker thread for every host), a name still gets one."""

from __future__ import annotations

import asyncio
import socket

import pytest

from auditor.errors import HostLevelError
from auditor.outcomes import HostOutcome
from auditor.transports.ssh import _tcp_connect


def _listener(family: socket.AddressFamily, address: str) -> socket.socket:
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((address, 0))
    server.listen()
    return server


@pytest.mark.parametrize(
    ("family", "address"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_an_ip_literal_is_connected_without_the_resolvers_thread(
    family: socket.AddressFamily, address: str
) -> None:
    server = _listener(family, address)
    port = server.getsockname()[1]

    async def main() -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        # With the default executor shut down, any resolver call fails: none is made.
        await loop.shutdown_default_executor()
        sock = await _tcp_connect(address, port, 5)
        try:
            return sock.getpeername()[:2]  # type: ignore[no-any-return]
        finally:
            sock.close()

    try:
        assert asyncio.run(main()) == (address, port)
    finally:
        server.close()


def test_a_name_is_still_resolved_and_a_refusal_is_unreachable() -> None:
    server = _listener(socket.AF_INET, "127.0.0.1")
    port = server.getsockname()[1]
    server.close()

    async def main() -> None:
        await _tcp_connect("localhost", port, 5)

    with pytest.raises(HostLevelError) as info:
        asyncio.run(main())
    assert info.value.outcome is HostOutcome.UNREACHABLE
    assert "refused" in info.value.detail
