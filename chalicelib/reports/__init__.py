"""A classification in the formats hospitals take: the JSON answer as a DICOM Structured Report
(TID 1500, for the PACS) or a FHIR R4 Bundle (for the record), chosen by the request's Accept
header. Each format is built from the JSON answer and, for a DICOM input, the input's header, so
every format says the same thing; none is stored (an upload job keeps the JSON answer and the
header elements the reports copy, source.py)."""
