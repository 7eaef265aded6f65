"""schemathesis hooks for the local stack: the credentials each route takes.

Every call to a user route carries a session token of `st-admin`, signed in through the sign-in
service's route. A test that logs that session out (DELETE /v1/sessions does) makes the next call
answer 401; schemathesis then asks for a new token (retry_on, 401 by default), so later cases still
run signed in.

The identity provider's routes are signed by the stand-in identity provider (ST_IDP_URL), which
infra/contract.sh sets as workspace `st`'s: Global Token Revocation gets a fresh bearer JWT for
every call (a `jti` is used once), and a generated Shared Signals body that the schema allows is
replaced by a SET the provider signed about a member of `st` (so generated cases reach the
receiver's checks, not only its signature's).
"""

import json
import os
import urllib.parse
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


IDP = os.environ.get("ST_IDP_URL", "")
IDP_AUDIENCE = os.environ.get("ST_IDP_AUDIENCE", "")
PROVIDER_ROUTES = ["globalTokenRevocation", "ssfEvents"]

# A SET travels as the JWT's text.
schemathesis.serializer.alias("application/secevent+jwt", "text/plain")


def idp_sign(path: str, **params: str) -> str:
    query = urllib.parse.urlencode({"audience": IDP_AUDIENCE, **params})
    with urllib.request.urlopen(f"{IDP}{path}?{query}", timeout=30) as res:
        return res.read().decode()


@schemathesis.auth(refresh_interval=None).apply_to(operation_id="globalTokenRevocation")
class ProviderJwt:
    def get(self, case, context):
        return idp_sign("/sign/gtr")

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.definition.raw.get("operationId") != "ssfEvents":
        return
    # Only a body the schema allows is replaced (a string of 1 to 16384 characters): a
    # schema-violating one must reach the receiver as generated, and be refused.
    if not isinstance(case.body, str) or not 1 <= len(case.body) <= 16384:
        return
    events = ["session-revoked", "credential-change", "account-disabled", "verification"]
    event = events[len(str(case.body)) % len(events)]
    case.body = idp_sign("/sign/set", event=event, email="st-member@st.example")


@schemathesis.auth().skip_for(operation_id=PROVIDER_ROUTES)
class SessionToken:
    def get(self, case, context):
        return sign_in("st-admin")

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
