"""DICOMweb for the hospital side: STOW-RS (PS3.18 10.5), the way a PACS or a DICOM router pushes
instances. POST /studies takes a multipart/related body of DICOM instances, classifies each one
through the same service as POST /xray, and answers a Store Instances Response Module (PS3.18
Annex I) in DICOM JSON, or the instances' SRs. Nothing is stored: the "store" is a
classification, its answer the findings.

This module holds only names app.py needs when it is imported (route content types, binary
types); the work is in multipart.py and stow.py, imported by the view."""

MULTIPART_RELATED = "multipart/related"
DICOM_JSON = "application/dicom+json"
# Chalice matches a route's content types ignoring parameters (type=, boundary=), so this one
# entry takes every STOW-RS body; API Gateway must pass it through as bytes (binary types).
STOW_CONTENT_TYPES = [MULTIPART_RELATED]
