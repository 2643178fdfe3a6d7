"""Ports the test PBX binds: checked before starting, so a taken port is one clear message."""

from __future__ import annotations

import socket
import subprocess

from testpbx.errors import SetupError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _holder(port: int, proto: str) -> str:
    flag = "-lunp" if proto == "udp" else "-ltnp"
    try:
        out = subprocess.run(["ss", "-H", flag, f"sport = :{port}"], capture_output=True,
                             text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.splitlines()[0].split()[-1] if out else ""


def ensure_free(address: str, ports: list[tuple[int, str]]) -> None:
    for port, proto in ports:
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError:
                holder = _holder(port, proto)
                raise SetupError(
                    f"port {port}/{proto} on {address} is already taken"
                    + (f" by {holder}" if holder else ""),
                    "stop what holds it (a running `make up` stack: make down), or move the "
                    "test PBX with IVR_PBX__SIP_PORT / IVR_ARI__URL / IVR_AMI__PORT",
                ) from None
