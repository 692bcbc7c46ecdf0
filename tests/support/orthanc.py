"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin, started on loopback with
a temporary configuration and storage (no DICOM port, no authentication, nothing outside its
temp folder), and stopped afterwards. STOW-RS, WADO-RS and QIDO-RS go to `dicomweb`; with
`servers`, Orthanc is also a DICOMweb client of those (its /dicom-web/servers/{name}/stow pushes
instances to them, as a PACS forwards to an AI service)."""
import contextlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional

import requests

from local_stack.emulator import free_port

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


@dataclass
class Orthanc:
    url: str        # Orthanc's own REST API
    dicomweb: str   # its DICOMweb root, ending in /

    def study_instances(self, study_uid: str) -> list:
        """QIDO-RS: every instance of a study, as DICOM JSON."""
        answer = requests.get(f"{self.dicomweb}studies/{study_uid}/instances",
                              headers={"Accept": "application/dicom+json"}, timeout=30)
        answer.raise_for_status()
        return answer.json() if answer.content else []


def available() -> bool:
    return Path(ORTHANC).exists() and Path(DICOMWEB_PLUGIN).exists()


@contextlib.contextmanager
def orthanc(workdir: Path, servers: Optional[Dict[str, dict]] = None) -> Iterator[Orthanc]:
    """Orthanc on a free loopback port, storing under workdir; stopped (and its port freed) on
    exit. Fails with Orthanc's log when it does not come up. servers: the DICOMweb plugin's
    "Servers" (name -> {"Url", ...}) it may push to."""
    if not available():
        raise RuntimeError(f"Orthanc is not installed ({ORTHANC}, {DICOMWEB_PLUGIN}): "
                           f"scripts/setup --with-test-tools installs it")
    storage = workdir / "orthanc-storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "tests", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "HttpPort": port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomServerEnabled": False, "HttpServerEnabled": True,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": servers or {}},
    }
    config_file = workdir / "orthanc.json"
    config_file.write_text(json.dumps(config))
    log = (workdir / "orthanc.log").open("wb")
    process = subprocess.Popen([ORTHANC, str(config_file)], stdout=log, stderr=subprocess.STDOUT,
                               cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/system", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Orthanc did not start:\n"
                                   + (workdir / "orthanc.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        yield Orthanc(url, f"{url}/dicom-web/")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(storage, ignore_errors=True)
