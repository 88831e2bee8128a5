"""gcp-storage-emulator with generation preconditions honoured (it ignores them: see
/work/shared/reference/emulators.md), so the lock's conditional writes can be tested: an upload or
delete with ifGenerationMatch that does not hold answers 412, as Cloud Storage does. The emulator
serves one request at a time, so the check and the write are atomic. A dev tool, never imported by
the CLI: `python -m runner.gcsemulator start --host H --port P --in-memory`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from gcp_storage_emulator import __main__ as emulator_main
from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

Handler = Callable[..., Any]


def _object_name(request: Any) -> str | None:
    if "object_id" in (request.params or {}):
        return str(request.params["object_id"])
    if "name" in request.query:
        return str(request.query["name"][0])
    data = request.data  # read the body in any case: the client is still sending it
    if isinstance(data, dict):
        meta = data.get("meta") if "meta" in data else data
        if isinstance(meta, dict) and meta.get("name"):
            return str(meta["name"])
    return None


def _generation(storage: Any, bucket: str, name: str) -> int:
    try:
        return int(storage.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return 0


def _guarded(handler: Handler) -> Handler:
    def run(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        wanted = request.query.get("ifGenerationMatch")
        if wanted and "upload_id" not in request.query:  # a resumable upload: checked at its start
            name = _object_name(request)
            bucket = request.params["bucket_name"]
            current = None if name is None else _generation(storage, bucket, name)
            if request.method == "DELETE" and current == 0:
                response.status = HTTPStatus.NOT_FOUND
                return None
            if current is not None and current != int(wanted[0]):
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "At least one of the "
                                         "pre-conditions you specified did not hold.",
                                         "errors": [{"reason": "conditionNotMet",
                                                     "message": "Precondition Failed"}]}})
                return None
        return handler(request, response, storage, *args, **kwargs)

    return run


def install() -> None:
    """Put the checks in front of the handlers that write or delete an object."""
    originals = {objects.insert, objects.delete, objects.patch}
    wrapped = {h: _guarded(h) for h in originals}
    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler in wrapped:
                handlers[method] = wrapped[handler]
    objects.insert = wrapped[objects.insert]  # the router's fallback for uploads names it


if __name__ == "__main__":
    install()
    sys.exit(emulator_main.main())
