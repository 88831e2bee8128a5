"""The google.rpc codes batchrun reads and writes on job errors (Vertex sets them; the local backend
uses the same ones), named once for the failure rules and the backends alike. Data only."""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    CANCELLED = 1
    UNKNOWN = 2  # a local worker's own error: not INTERNAL, which Vertex holds for 10 minutes
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4  # an answer may be on its way, and billed
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10  # how the local backend reports a worker that vanished: no backoff
    OUT_OF_RANGE = 11  # a local endpoint answered past max_response_bytes: paid for, unusable
    UNIMPLEMENTED = 12
    INTERNAL = 13  # Vertex fails a region's first job so: resubmit after ~10 minutes
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16
