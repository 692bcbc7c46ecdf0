"""The CloudWatch Embedded Metric Format specification as a JSON schema, plus the rules a schema
cannot say (each referenced name is a top-level member of the right type), and the log lines of
a captured stdout split into EMF documents and JSON log lines.

Written from the specification (CloudWatch User Guide, "Specification: Embedded metric format"):
the root holds `_aws` {Timestamp: integer ms since the epoch, CloudWatchMetrics: [MetricDirective]};
a MetricDirective is {Namespace: string, Dimensions: [DimensionSet], Metrics: [MetricDefinition]}
with at most 100 metric definitions; a DimensionSet is a list of at most 30 dimension names,
each naming a top-level string member; a MetricDefinition is {Name, Unit?, StorageResolution?},
its Name naming a top-level number or array of (at most 100) numbers.
"""
import json
from typing import Any, Dict, List, Tuple

import jsonschema

UNITS = ["Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
         "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
         "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
         "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
         "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"]

NAME = {"type": "string", "minLength": 1, "maxLength": 1024}
SCHEMA: Dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {**NAME, "maxLength": 255},
                            "Dimensions": {"type": "array",
                                           "items": {"type": "array", "items": NAME,
                                                     "maxItems": 30}},
                            "Metrics": {
                                "type": "array", "maxItems": 100,
                                "items": {
                                    "type": "object", "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": NAME,
                                        "Unit": {"enum": UNITS},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def check_emf(document: Dict[str, Any]) -> None:
    """Raises AssertionError (or jsonschema.ValidationError) unless document is valid EMF."""
    jsonschema.validate(document, SCHEMA)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                value = document.get(name)
                assert isinstance(value, str) and 0 < len(value) <= 1024, (name, value)
        for metric in directive["Metrics"]:
            value = document.get(metric["Name"])
            values = value if isinstance(value, list) else [value]
            assert 0 < len(values) <= 100, (metric["Name"], value)
            assert all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       for v in values), (metric["Name"], value)


def split_lines(stdout: str) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(EMF documents, JSON log lines) of a captured stdout; every line must be JSON."""
    emf, logs = [], []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parsed = json.loads(line)
        (emf if "_aws" in parsed else logs).append(parsed)
    return emf, logs


def metrics_of(documents: List[Dict[str, Any]]) -> List[Tuple[str, Dict[str, str], Any]]:
    """(metric name, {dimension: value}, value) for every metric of every document."""
    found = []
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = {name: document[name] for name in dimension_set}
                for metric in directive["Metrics"]:
                    found.append((metric["Name"], dimensions, document[metric["Name"]]))
    return found
