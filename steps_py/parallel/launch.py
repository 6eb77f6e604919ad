"""torchrun for one machine with every listening socket on loopback.

    python -m steps_py.parallel.launch --nproc_per_node 4 -m steps_py.parallel.train --egs ...

takes exactly torchrun's arguments (it IS torchrun: `torch.distributed.run.main`) and adds
`--standalone` when no rendezvous is given. Why it exists: torchrun's elastic agent creates
its TCP stores (the c10d rendezvous store and the store it shares with the workers) with
`TCPStore(host, port, is_master=True)`, and a TCPStore server binds every interface
whatever `host` says (`ss -ltnp` shows `*:PORT pt_elastic`), unauthenticated. Here, before
torchrun starts, a store server whose host is a loopback name or address gets a socket that
is already bound to 127.0.0.1 (TCPStore's `master_listen_fd`), so it listens on loopback
only. Stores for other hosts (multi-node runs) are left alone: protect that port with a
firewall or a private network (README, "Many GPUs or nodes"). The workers' gloo transport is
bound to loopback too (`GLOO_SOCKET_IFNAME=lo` unless set).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any

import torch.distributed as dist

_ORIGINAL = dist.TCPStore
_SOCKETS: list[socket.socket] = []  # kept open for the life of the process


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_listen_socket(port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:port (port 0: a free one)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(4096)
    _SOCKETS.append(s)
    return s


def loopback_tcp_store(host_name: str, port: int, *args: Any, **kwargs: Any) -> dist.TCPStore:
    """`TCPStore(...)` whose server, for a loopback host, listens on 127.0.0.1 only."""
    names = (
        "world_size",
        "is_master",
        "timeout",
        "wait_for_workers",
        "multi_tenant",
        "master_listen_fd",
        "use_libuv",
    )
    kw = dict(zip(names, args, strict=False)) | kwargs
    if kw.get("is_master") and kw.get("master_listen_fd") is None and is_loopback(host_name):
        try:
            s = loopback_listen_socket(port)
        except OSError as e:
            # Another agent on this host already serves the store (two agents of a multi-node
            # run on one machine): say it as TCPStore would, a RuntimeError, on which torch's
            # c10d rendezvous retries as a client. An OSError would end the agent.
            raise dist.DistNetworkError(
                f"cannot listen on 127.0.0.1:{port} for the store: {e.strerror}"
            ) from e
        kw["master_listen_fd"] = s.fileno()
        host_name, port = "127.0.0.1", s.getsockname()[1]
    return _ORIGINAL(host_name, port, **kw)


def patch_stores() -> None:
    """Make every TCPStore that torchrun's agent creates go through `loopback_tcp_store`."""
    from torch.distributed import rendezvous as rdzv
    from torch.distributed.elastic.rendezvous import c10d_rendezvous_backend, static_tcp_rendezvous

    for mod in (dist, rdzv, c10d_rendezvous_backend, static_tcp_rendezvous):
        mod.TCPStore = loopback_tcp_store  # type: ignore[attr-defined,misc]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(
        a.startswith(
            ("--standalone", "--rdzv-endpoint", "--rdzv_endpoint", "--master-addr", "--master_addr")
        )
        for a in argv
    ):
        argv.insert(0, "--standalone")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    patch_stores()
    from torch.distributed.run import main as torchrun_main

    torchrun_main(argv)


if __name__ == "__main__":
    main()
