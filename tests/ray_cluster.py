"""A real Ray cluster on this machine for the tests: a head node with no CPU (so that every cell runs on a
worker node) and worker nodes added and killed at will, each its own ``ray start --block`` process group.

With ``hide``, a worker node runs in a mount namespace of its own where a tmpfs covers that folder: the
node cannot see the driver's data or results folders under it, as on a cluster without a shared disk (needs
root, as CI's machines give; ``faults/mounts.can_mount``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
STARTED = "Ray runtime started"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    def __init__(self, hide: Path | None = None):
        self.hide = hide
        self.temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.address = f"127.0.0.1:{free_port()}"
        # the cluster's own token (a head node turns token authentication on whenever it finds one, even
        # ~/.ray's): every node and driver of this cluster is given it, nothing else can join
        token = Path(self.temp) / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
        self.head = self._start(["--head", f"--port={self.address.split(':')[1]}", "--num-cpus=0",
                                 "--include-dashboard=false", f"--temp-dir={self.temp}"], hidden=False)
        self.workers: list[subprocess.Popen] = []

    def _start(self, args: list[str], hidden: bool) -> subprocess.Popen:
        command = [RAY, "start", "--block", "--disable-usage-stats", *args]
        if hidden:  # its own mount namespace, the folder covered by an empty tmpfs
            command = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                       f'mount -t tmpfs -o size=1m tmpfs "{self.hide}" && exec "$@"', "sh", *command]
        env = {**os.environ, **self.env, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        deadline, seen = time.time() + 120, []
        for line in proc.stdout:
            seen.append(line)
            if STARTED in line:
                break
            if time.time() > deadline:
                break
        else:
            raise RuntimeError(f"ray start failed: {''.join(seen)[-2000:]}")
        return proc

    def add_worker(self, cpus: int = 1) -> subprocess.Popen:
        proc = self._start([f"--address={self.address}", f"--num-cpus={cpus}"], hidden=self.hide is not None)
        self.workers.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """The node dies at once, every process of it (raylet, object store, its workers)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def kill_workers(self) -> None:
        for proc in self.workers:
            self.kill(proc)
        self.workers.clear()

    def shutdown(self) -> None:
        self.kill_workers()
        self.kill(self.head)
        shutil.rmtree(self.temp, ignore_errors=True)


    def task_pids(self) -> list[int]:
        """The processes of this cluster running a bench task now: Ray titles a busy worker by its function,
        and a worker of this cluster carries its token's path (another Ray on this machine is not counted)."""
        out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        pids = [int(line.split()[0]) for line in out.splitlines() if "ray::_ray_execute" in line]
        mark = f"RAY_AUTH_TOKEN_PATH={self.env['RAY_AUTH_TOKEN_PATH']}".encode()
        found = []
        for pid in pids:
            try:
                if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    found.append(pid)
            except OSError:
                continue
        return found
