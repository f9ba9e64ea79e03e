"""Standard Webhooks signatures (https://www.standardwebhooks.com) and their secrets.

A secret is ``whsec_`` + base64 of 32 random bytes; the signature is ``v1,`` + base64 of
HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}`` keyed with the decoded bytes,
computed by the ``standardwebhooks`` reference library (receivers verify with the same one).
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: datetime, body: str) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    return Webhook(secret).sign(msg_id, timestamp, body)


def headers(secret: str, msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers (the timestamp is the attempt's, in whole
    seconds, as receivers reject stale ones)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
