"""schemathesis hooks for pgstorage's document (loaded through SCHEMATHESIS_HOOKS).

TUS PATCH bodies are `application/offset+octet-stream`: raw bytes, which schemathesis has no
serializer for until it is told to send them as it sends `application/octet-stream`.
"""

import schemathesis
from schemathesis.transport.serialization import serialize_binary


@schemathesis.serializer("application/offset+octet-stream")
def offset_octet_stream(ctx, value):
    return serialize_binary(value)
