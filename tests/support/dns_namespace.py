"""Run one command with a name server of its own: `python -m tests.support.dns_namespace
--record NAME=ADDRESS ... -- COMMAND...`, started inside `unshare -n -m`.

In the new network namespace only loopback is brought up; a small DNS server answers on
127.0.0.1:53 (A records for the names given, "no such name" for anything else), and
/etc/resolv.conf is replaced, in the new mount namespace only, by one naming it. The
command then resolves names with the real C library resolver, and no query can leave the
namespace. Used to give `ssh -G` and the auditor the same names to canonicalise.
"""

from __future__ import annotations

import argparse
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

TYPE_A = 1
CLASS_IN = 1
NXDOMAIN = 3


def _question(packet: bytes) -> tuple[str, int, int, int]:
    """The query's name, type and class, and where the question section ends."""
    pos = 12
    labels = []
    while packet[pos]:
        length = packet[pos]
        labels.append(packet[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    pos += 1
    qtype, qclass = struct.unpack("!HH", packet[pos : pos + 4])
    return ".".join(labels), qtype, qclass, pos + 4


def answer(packet: bytes, records: dict[str, str]) -> bytes:
    """The response to one query."""
    ident, _flags, qdcount = struct.unpack("!HHH", packet[:6])
    name, qtype, qclass, end = _question(packet)
    address = records.get(name.lower().rstrip("."))
    rcode = 0 if address is not None else NXDOMAIN
    answers = b""
    if address is not None and qtype == TYPE_A and qclass == CLASS_IN:
        answers = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 60, 4) + socket.inet_aton(address)
    flags = 0x8180 | rcode  # a response, recursion desired and available
    header = struct.pack("!HHHHHH", ident, flags, qdcount, 1 if answers else 0, 0, 0)
    return header + packet[12:end] + answers


def _serve(sock: socket.socket, records: dict[str, str]) -> None:
    while True:
        try:
            packet, peer = sock.recvfrom(512)
        except OSError:
            return
        try:
            sock.sendto(answer(packet, records), peer)
        except (OSError, IndexError, struct.error):
            continue


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", action="append", default=[], metavar="NAME=ADDRESS")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    records = dict(item.lower().split("=", 1) for item in args.record)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        resolv = Path(tmp) / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
        subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 53))  # bound before the command starts: it is ready
        threading.Thread(target=_serve, args=(sock, records), daemon=True).start()
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
