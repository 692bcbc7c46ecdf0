"""The AWS stand-in: a moto server on a free loopback port, in this process, with dummy
credentials.

In-process (moto.server.ThreadedMotoServer), so that the supervisor owns it: it lives exactly as
long as the supervisor and needs no process of its own to find and stop. Loopback only: the
presigned upload URLs point at it, and nothing off this machine should reach it. The
credentials are moto's conventional dummies; the config and credential files are /dev/null so
that no profile of the user's real account is ever read, let alone used.
"""
import logging
import socket
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_SESSION_TOKEN": "testing"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Emulator:
    endpoint: str
    server: Any

    def env(self) -> Dict[str, str]:
        """What a process needs so that boto3 (and Chalice) talk to this server and only to
        it: AWS_ENDPOINT_URL, the dummy credentials, the region, no config files."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION, "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    def client(self, service: str) -> Any:
        import boto3
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"])

    def stop(self) -> None:
        self.server.stop()


def start() -> Emulator:
    """A moto server listening on 127.0.0.1 (a free port), its account empty."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # otherwise a line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    emulator = Emulator(endpoint=f"http://127.0.0.1:{port}", server=server)
    # moto's backends are module state of this process: start from an empty account
    urllib.request.urlopen(urllib.request.Request(f"{emulator.endpoint}/moto-api/reset",
                                                  method="POST"), timeout=30).close()
    return emulator
