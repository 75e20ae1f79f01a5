"""A TCP proxy on loopback whose connections a test can cut, as a flaky network would."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; :meth:`cut` drops every open connection."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stopped = False
        self._frozen: set[tuple[int, int]] = set()  # (source, destination) ids whose traffic is silently dropped
        self.blackhole = False  # new connections are accepted but go nowhere
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blackhole:
                with self._lock:
                    self._pairs.append((client, client))
                continue  # never answered, never closed: a network that went away
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if (id(src), id(dst)) not in self._frozen:
                    self._forward(src, dst, data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _forward(self, src: socket.socket, dst: socket.socket, data: bytes) -> None:
        """Pass ``data`` from ``src`` on to ``dst`` (a subclass may shape it)."""
        dst.sendall(data)

    def cut(self) -> int:
        """Drop every open connection (both sides see a reset/EOF); return how many."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self._frozen.clear()  # ids of closed sockets get reused by new ones
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        return len(pairs)

    def freeze(self, blackhole: bool = False, toward: str = "both") -> None:
        """Silently drop the traffic of the open connections (no reset, no FIN), as a dead
        route does: ``toward`` the "server", the "client" or "both"; with ``blackhole`` new
        connections go nowhere too."""
        self.blackhole = blackhole
        with self._lock:
            for client, upstream in self._pairs:
                if toward in ("server", "both"):
                    self._frozen.add((id(client), id(upstream)))
                if toward in ("client", "both"):
                    self._frozen.add((id(upstream), id(client)))

    def thaw(self) -> None:
        """The route is back: what froze is dropped (as a dead route's connections are), new connections work."""
        self.blackhole = False
        self.cut()

    def close(self) -> None:
        self._stopped = True
        self.listener.close()
        self.cut()
