"""schemathesis hooks for the local stack: the bearer token of the user routes.

Every call carries a session token of `st-admin`, signed in through the sign-in service's route.
A test that logs that session out (DELETE /v1/sessions does) makes the next call answer 401;
schemathesis then asks for a new token (retry_on, 401 by default), so later cases still run
signed in.
"""

import json
import os
import urllib.request

import schemathesis

BASE = os.environ["ST_BASE_URL"]


def sign_in(user: str) -> str:
    body = json.dumps(
        {
            "user_id": user,
            "apps": ["chatgpt"],
            "client": "browser",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) schemathesis",
            "ip": "198.51.100.77",
        }
    ).encode()
    req = urllib.request.Request(
        f"{BASE}/v1/internal/sessions", data=body, headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=60) as res:
        return json.load(res)["token"]


@schemathesis.auth()
class SessionToken:
    def get(self, case, context):
        return sign_in("st-admin")

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
