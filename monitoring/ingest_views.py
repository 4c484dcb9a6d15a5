"""What the instances send the studio: their OpenTelemetry spans over OTLP/HTTP (monitoring/tracing.py)."""

from __future__ import annotations

import gzip
import io
import logging
import zlib

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from endpoints.connections import allowed_caller
from monitoring import otlp, tracing

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024  # compressed or not; an export batch is far smaller (512 spans at most)
PROTOBUF = "application/x-protobuf"


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"code": status, "message": message}, status=status)


@csrf_exempt
@require_POST
def otlp_traces(request):
    """OTLP/HTTP `ExportTraceServiceRequest` (protobuf) from an instance, with its bearer token."""
    if not allowed_caller(request.META):
        return _error(403, "Spans are taken only from the instances' networks (FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS).")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    instance = tracing.instance_for(token.strip()) if scheme.lower() == "bearer" else None
    if instance is None:
        return _error(401, "The token is missing, not the studio's, or its instance no longer runs.")
    if request.content_type != PROTOBUF:
        return _error(415, f"Send OTLP/HTTP protobuf ({PROTOBUF}), not {request.content_type or 'no content type'}.")
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        return _error(413, f"An export may hold at most {MAX_BODY_BYTES} bytes.")
    body = request.body
    encoding = request.headers.get("Content-Encoding", "").lower()
    try:
        if encoding == "gzip":
            body = _gunzip(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        spans = otlp.spans(body)
    except (OSError, EOFError, zlib.error, otlp.DecodeError) as error:
        return _error(400, f"The export is not a readable OTLP trace request: {error}")
    tracing.store(instance, spans)
    return HttpResponse(b"", content_type=PROTOBUF)  # an empty ExportTraceServiceResponse: all accepted


def _gunzip(body: bytes) -> bytes:
    with gzip.GzipFile(fileobj=io.BytesIO(body)) as stream:
        data = stream.read(MAX_BODY_BYTES * 4 + 1)
    if len(data) > MAX_BODY_BYTES * 4:
        raise OSError("it unpacks to more than 32 MB")
    return data
