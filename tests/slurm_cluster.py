"""A real Slurm on this machine for the tests: munge, a controller (``slurmctld``) and one compute node
(``slurmd``), Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them), each started in the foreground
from a folder of its own with its own ports, and stopped with the fixture. No accounting database: ``sacct``
answers "accounting storage is disabled", as on small clusters, and the executor does not need it.

With ``hide``, the compute node runs in a mount namespace of its own where a tmpfs covers that folder: its
jobs cannot see the driver's data or results folders under it (no shared disk but the jobs folder).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ray_cluster import free_port

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")


def missing() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def _which(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    def __init__(self, hide: Path | None = None, cpus: int = 2):
        self.root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
        for sub in ("state", "spool", "log", "munge"):
            (self.root / sub).mkdir()
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.host = socket.gethostname().split(".")[0]
        user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
        conf = self.root / "slurm.conf"
        conf.write_text("\n".join([
            "ClusterName=bench-test", f"SlurmctldHost={self.host}", f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}", "AuthType=auth/munge", f"AuthInfo=socket={self.root}/munge/sock",
            "CredType=cred/munge", f"SlurmUser={user}", f"SlurmdUser={user}",
            f"StateSaveLocation={self.root}/state", f"SlurmdSpoolDir={self.root}/spool",
            f"SlurmctldPidFile={self.root}/slurmctld.pid", f"SlurmdPidFile={self.root}/slurmd.pid",
            f"SlurmctldLogFile={self.root}/log/slurmctld.log", f"SlurmdLogFile={self.root}/log/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core", "SchedulerType=sched/backfill", "SchedulerParameters=sched_interval=1",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none", "MpiDefault=none", "ReturnToService=2", "SwitchType=switch/none",
            "MessageTimeout=30", "KillWait=2", "MinJobAge=2",
            f"NodeName={self.host} CPUs={cpus} RealMemory=8000 State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
        self.env = {"SLURM_CONF": str(conf)}
        env = {**os.environ, **self.env}
        self.procs = [self._spawn([_which("munged"), "--foreground", f"--key-file={key}",
                                   f"--socket={self.root}/munge/sock", f"--pid-file={self.root}/munge/pid",
                                   f"--log-file={self.root}/munge/log", f"--seed-file={self.root}/munge/seed",
                                   "--force"], env)]
        self._wait(lambda: (self.root / "munge" / "sock").exists(), "munged")
        self.procs.append(self._spawn([_which("slurmctld"), "-D", "-i"], env))
        slurmd = [_which("slurmd"), "-D"]
        if hide is not None:
            slurmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                      f'mount -t tmpfs -o size=1m tmpfs "{hide}" && exec "$@"', "sh", *slurmd]
        self.procs.append(self._spawn(slurmd, env))
        self._wait(self._node_idle, "the Slurm node to be idle")

    @staticmethod
    def _spawn(command, env) -> subprocess.Popen:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def _wait(self, condition, what: str, seconds: float = 60) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            if condition():
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.2)
        logs = "".join(p.read_text()[-1500:] for p in (self.root / "log").glob("*.log"))
        self.stop()
        raise RuntimeError(f"Slurm did not start ({what}): {logs}")

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True,
                             env={**os.environ, **self.env})
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def queue(self) -> list[str]:
        """The job ids Slurm holds now (array tasks one by one)."""
        out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i %T"], capture_output=True, text=True,
                             env={**os.environ, **self.env}, check=True)
        return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]

    def running(self) -> list[str]:
        out = subprocess.run(["squeue", "--noheader", "--array", "--states=RUNNING", "--format=%i"],
                             capture_output=True, text=True, env={**os.environ, **self.env}, check=True)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()]

    def cancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], env={**os.environ, **self.env}, check=True)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        self.procs = []
        shutil.rmtree(self.root, ignore_errors=True)
