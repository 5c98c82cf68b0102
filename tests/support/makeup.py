"""`make up` as a person runs it (deploy/local/up.sh under honcho), on ports and a RUN_DIR
of the test's own, started and stopped with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx

from support.backends import LOCAL_AMQP
from support.proxy import free_port
from support.system import delete_namespace, new_namespace
from support.wait import eventually

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"intake": "INTAKE_PORT", "routing": "ROUTING_PORT", "sla": "SLA_PORT",
            "knowledge": "KNOWLEDGE_PORT", "gateway": "GATEWAY_PORT",
            "analytics": "ANALYTICS_PORT"}
PORTS = ("GATEWAY_PORT", "INTAKE_PORT", "ROUTING_PORT", "SLA_PORT", "KNOWLEDGE_PORT",
         "ANALYTICS_PORT",
         "SMTP_LISTEN_PORT", "MAILCATCHER_PORT", "MONGO_EMULATOR_PORT")


def secrets_of(run_dir: Path) -> dict[str, str]:
    found = {}
    for line in (run_dir / "secrets.env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        found[name] = value.strip("'")
    return found


class MakeUp:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.ports = {name: free_port() for name in PORTS}
        self.env = {k: v for k, v in os.environ.items() if k != "MONGO_URL"}  # the emulator
        self.env.update({name: str(port) for name, port in self.ports.items()})
        self.env.update(RUN_DIR=str(run_dir), BUS_NAMESPACE=new_namespace(), LOG_FORMAT="json")
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, port: str) -> str:
        return f"http://127.0.0.1:{self.ports[port]}"

    def spawn(self) -> None:
        """In a session of its own, as a terminal would run it: Ctrl-C reaches it all."""
        self.starts += 1
        log = (self.run_dir.parent / f"make-up-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(["bash", "deploy/local/up.sh"], cwd=ROOT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    async def start(self) -> None:
        self.spawn()

        async def ready() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.log_tail()
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    for port in SERVICES.values():
                        if (await client.get(f"{self.url(port)}/health/ready")).status_code != 200:
                            return False
                return True
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout=90, interval=0.5, what="make up ready")

    async def forget(self) -> None:
        """Stopped for good: its queues and exchange go, as a System's do (every CI run
        left two namespaces of 36 queues on the broker)."""
        if self.process is not None and self.process.poll() is None:
            self.stop()
        await delete_namespace(self.env.get("AMQP_URL", LOCAL_AMQP), self.env["BUS_NAMESPACE"],
                               list(SERVICES))

    def stop(self) -> int:
        """Ctrl-C, as in a terminal: the whole process group gets SIGINT."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise

    def log_tail(self) -> str:
        path = self.run_dir.parent / f"make-up-{self.starts}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:])
