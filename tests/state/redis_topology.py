"""A real Redis Cluster (3 primaries) and a real Sentinel setup on loopback ports."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis_server import RedisServer, free_port

__all__ = ["RedisCluster3", "SentinelSetup", "wait_until"]


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def wait_until(check: object, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {seconds} s")
        time.sleep(0.05)


class RedisCluster3:
    """Three ``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster create``
    (with ``replicas``, that many replicas of each primary too)."""

    def __init__(self, server: str, cli: str, replicas: int = 0,
                 node_timeout_ms: int = 2000) -> None:
        self.servers = [RedisServer(server, _cluster_port(), "--cluster-enabled", "yes",
                                    "--cluster-node-timeout", str(node_timeout_ms))
                        for _ in range(3 * (1 + replicas))]
        self.cli = cli
        self.replicas = replicas

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def server(self, port: int) -> RedisServer:
        """The node listening on ``port``."""
        return next(s for s in self.servers if s.port == port)

    def start(self) -> RedisCluster3:
        for server in self.servers:
            server.start()
        nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
        subprocess.run([self.cli, "--cluster", "create", *nodes,
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)

        def ready() -> bool:
            for s in self.servers:
                with redis.Redis(port=s.port) as c:
                    if b"cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                        return False
                    info = c.info("replication")
                    if info["role"] == "slave" and info["master_link_status"] != "up":
                        return False  # a replica must have synced to take over
            return True

        wait_until(ready, "cluster_state:ok")
        return self

    def close(self) -> None:
        for server in self.servers:
            server.close()


class SentinelSetup:
    """A primary, a replica and one sentinel watching them as ``mymaster``."""

    def __init__(self, server: str) -> None:
        self.binary = server
        self.primary = RedisServer(server)
        self.replica: RedisServer | None = None
        self.sentinel_port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="meshlite-sentinel-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/mymaster"

    def start(self) -> SentinelSetup:
        self.primary.start()
        self.replica = RedisServer(self.binary, None, "--replicaof", "127.0.0.1",
                                   str(self.primary.port)).start()
        conf = Path(self._dir.name) / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.primary.port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n")
        self._proc = subprocess.Popen([self.binary, str(conf), "--sentinel"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        replica_port = self.replica.port

        def replicated() -> bool:
            with redis.Redis(port=self.sentinel_port) as s:
                replicas = s.execute_command("SENTINEL", "REPLICAS", "mymaster")
                return any(r[b"port"] == str(replica_port).encode()
                           and r[b"master-link-status"] == b"ok" for r in replicas)

        wait_until(replicated, "the sentinel seeing the replica")
        return self

    def master_port(self) -> int:
        with redis.Redis(port=self.sentinel_port) as s:
            _, port = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        return int(port)

    def failover(self) -> int:
        """Promote the replica (``SENTINEL FAILOVER``); returns the new primary's port."""
        old = self.master_port()
        with redis.Redis(port=self.sentinel_port) as s:
            s.execute_command("SENTINEL", "FAILOVER", "mymaster")

        def promoted() -> bool:
            if self.master_port() == old:
                return False
            with redis.Redis(port=old) as c:  # the old primary is demoted
                return bool(c.info("replication")["role"] == "slave")

        wait_until(promoted, "the failover")
        return self.master_port()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
        if self.replica is not None:
            self.replica.close()
        self.primary.close()
        self._dir.cleanup()
