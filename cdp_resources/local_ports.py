"""TCP ports on 127.0.0.1 for the servers the project runs itself (PostgreSQL, Spark Connect, tests' own)."""

import socket


def free_port() -> int:
    """A port no one listens on now (the system's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether something listens on `port`."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
