"""The algorithm as reports name it (the SR's Contributing Equipment, FHIR's Device): who made it,
the model's name and version, the service's version, and a device UID that follows the weights:
the same sha256 always gives the same UID, new weights a new one."""
from dataclasses import dataclass
from typing import Any, Mapping

from chalicelib import __version__

MANUFACTURER = "chest-xray-serverless"
# generate_uid(entropy_srcs=...) derives a UID (under pydicom's root) from these and the sha256:
# the same weights, the same device UID, on every function and every run.
DEVICE_UID_SALT = "chest-xray-serverless device"


@dataclass(frozen=True)
class Device:
    manufacturer: str
    model_name: str
    model_version: str
    service_version: str
    weights_sha256: str
    trained: bool

    @property
    def uid(self) -> str:
        from pydicom.uid import generate_uid
        return str(generate_uid(entropy_srcs=[DEVICE_UID_SALT, self.weights_sha256]))

    @property
    def software_versions(self) -> str:
        return f"model {self.model_version}; service {self.service_version}"


def device_of(answer: Mapping[str, Any]) -> Device:
    """The device of a JSON answer (its `model` member)."""
    model = answer["model"]
    return Device(MANUFACTURER, model["name"], str(model["version"]), __version__,
                  model["sha256"], bool(model["trained"]))
