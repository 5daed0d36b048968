"""A TCP proxy that can stall: while stalled it forwards nothing (a network partition where
packets are dropped, not refused, or a server that stopped answering), keeping every socket open."""

from __future__ import annotations

import select
import socket
import threading


class StallProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.stalled = threading.Event()
        self.closing = threading.Event()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.closing.is_set():
            socks = [self.listener] + [s for pair in self.pairs for s in pair]
            readable, _, _ = select.select(socks, [], [], 0.05)
            for s in readable:
                if s is self.listener:
                    if self.stalled.is_set():
                        continue  # accept nothing new while "partitioned"; SYNs sit in the backlog
                    client, _ = s.accept()
                    upstream = socket.create_connection(self.target)
                    self.pairs.append((client, upstream))
                    continue
                if self.stalled.is_set():
                    continue
                for a, b in list(self.pairs):
                    if s is a or s is b:
                        other = b if s is a else a
                        try:
                            data = s.recv(65536)
                        except OSError:
                            data = b""
                        if not data:
                            for x in (a, b):
                                x.close()
                            self.pairs.remove((a, b))
                        else:
                            other.sendall(data)
                        break
            if self.stalled.is_set():
                self.closing.wait(0.05)

    def close(self) -> None:
        self.closing.set()
        self.thread.join(2)
        for a, b in self.pairs:
            a.close()
            b.close()
        self.listener.close()
