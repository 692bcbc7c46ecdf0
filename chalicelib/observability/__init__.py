"""Logs, audit and metrics, with no patient data: logging.py decides where every line goes and
strips what a record may not carry, request.py what a request line says, audit.py what the
audit line says, metrics.py the CloudWatch metrics (EMF). Never pixels, findings, error
messages or any DICOM patient/study field."""
