"""Each finding label's code in a report (SR concept names, FHIR Observation codes): SNOMED CT
where DICOM's own code tables (PS3.16, as pydicom ships them) give the concept, DICOM's DCM codes
where only those do, else our private coding scheme. A label not in the table (a model with
other labels) gets a private code made from the label, so every finding is reported."""
import hashlib
from dataclasses import dataclass
from typing import Dict

SNOMED = "SCT"
DCM = "DCM"
# A private coding scheme (PS3.16 8.2: designators beginning with 99 are local), for the labels
# no public table above codes: the README's "Codes" section lists them.
PRIVATE = "99CXRS"
PRIVATE_NAME = "chest-xray-serverless findings"
PRIVATE_VERSION = "1"
# FHIR Coding.system of each scheme
FHIR_SYSTEMS = {
    SNOMED: "http://snomed.info/sct",
    DCM: "http://dicom.nema.org/resources/ontology/DCM",
    PRIVATE: "urn:chest-xray-serverless:findings",
}


@dataclass(frozen=True)
class Code:
    value: str
    scheme: str
    meaning: str


FINDING_CODES: Dict[str, Code] = {
    "Pneumothorax": Code("36118008", SNOMED, "Pneumothorax"),
    "Edema": Code("19242006", SNOMED, "Pulmonary edema"),
    "Fibrosis": Code("112674009", SNOMED, "Fibrosis"),
    "Effusion": Code("60046008", SNOMED, "Pleural effusion"),
    "Cardiomegaly": Code("287272002", SNOMED, "Cardiomegaly"),
    "Nodule": Code("27925004", SNOMED, "Nodule"),
    "Mass": Code("4147007", SNOMED, "Mass"),
    "Infiltration": Code("112121", DCM, "Infiltrate"),
    "Lung Opacity": Code("112033", DCM, "Abnormal opacity"),
    "Atelectasis": Code("ATELECTASIS", PRIVATE, "Atelectasis"),
    "Consolidation": Code("CONSOLIDATION", PRIVATE, "Consolidation"),
    "Emphysema": Code("EMPHYSEMA", PRIVATE, "Emphysema"),
    "Pneumonia": Code("PNEUMONIA", PRIVATE, "Pneumonia"),
    "Pleural_Thickening": Code("PLEURAL_THICK", PRIVATE, "Pleural thickening"),
    "Hernia": Code("HERNIA", PRIVATE, "Hernia"),
    "Lung Lesion": Code("LUNG_LESION", PRIVATE, "Lung lesion"),
    "Fracture": Code("FRACTURE", PRIVATE, "Fracture"),
    "Enlarged Cardiomediastinum": Code("ENLARGED_CM", PRIVATE, "Enlarged cardiomediastinum"),
}


def finding_code(label: str) -> Code:
    """The code a report gives finding `label`."""
    known = FINDING_CODES.get(label)
    if known is not None:
        return known
    # a Code Value is at most 16 characters: a digest of the label, the label as its meaning
    digest = hashlib.sha256(label.encode()).hexdigest()[:12].upper()
    return Code(f"L{digest}", PRIVATE, label.replace("_", " ")[:64])
