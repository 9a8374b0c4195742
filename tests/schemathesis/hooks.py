"""Schemathesis hooks for chatd: every request carries the app signature and a session.

The signature covers the exact bytes sent (method, path and query, body), so it is computed by
a `requests` auth object, which runs after the request is fully prepared.
"""

import hashlib
import hmac
import os
import time

import requests
import schemathesis

SECRET = os.environ["CHAT_APP_SECRET"].encode()
PLACEHOLDER = "sign-me"


class Signed(requests.auth.AuthBase):
    def __call__(self, request):
        # The run passes X-Signature: sign-me as the valid credential. Requests that schemathesis
        # sends without it or with another value, to check that they are refused, stay so.
        if request.headers.get("X-Signature") != PLACEHOLDER:
            return request
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        timestamp = str(int(time.time() * 1000))
        to_sign = f"{timestamp}\n{request.method}\n{request.path_url}\n{hashlib.sha256(body).hexdigest()}"
        request.headers["X-Timestamp"] = timestamp
        request.headers["X-Signature"] = hmac.new(SECRET, to_sign.encode(), hashlib.sha256).hexdigest()
        return request


@schemathesis.hook
def before_call(context, case, kwargs):
    kwargs["auth"] = Signed()
