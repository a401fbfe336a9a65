"""insights-client's upload path (insights-core's own code, unmodified) against intake.

Usage: insights_upload.py UPLOAD_URL IDENTITY ARCHIVE CONTENT_TYPE

Runs `insights.client.client.upload(config, InsightsConnection(config), ...)`, the function
`InsightsClient(config).upload()` calls, with a configuration as a machine registered by Basic auth
would have it (`authmethod=BASIC`, `upload_url` pointed at intake). A gateway in front of ingress
turns the Basic credentials into an `x-rh-identity` header; here the client's session carries that
header, as the gateway would add it. The caller sets INSIGHTS_CONF_DIR to a directory of its own, so
the client's registration files land there.

Prints one JSON object: the outcome the client reports ("uploaded" or "failed" with its error),
the HTTP status it got, the answer's body, the Basic credentials it sent and the messages it logged.
"""

import base64
import json
import logging
import sys

from insights.client import client
from insights.client.config import InsightsConfig
from insights.client.connection import InsightsConnection


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.INFO)
        self.messages = []

    def emit(self, record):
        message = record.getMessage()
        # insights-core's component loading (canonical facts) is noise here.
        if not message.startswith("Trying "):
            self.messages.append(message)


def main():
    upload_url, identity, archive, content_type = sys.argv[1:5]
    logs = Collect()
    root = logging.getLogger("insights")
    root.setLevel(logging.DEBUG)
    root.addHandler(logs)

    config = InsightsConfig(
        authmethod="BASIC",
        username="compat-user",
        password="compat-password",
        upload_url=upload_url,
        base_url="127.0.0.1/api",
        cert_verify=False,
        legacy_upload=False,
        retries=1,
        http_timeout=30,
    )
    pconn = InsightsConnection(config)
    # The gateway's part: identity for the authenticated caller (an empty IDENTITY: none added).
    if identity:
        pconn.session.headers["x-rh-identity"] = identity

    answers = []

    def keep(response, *args, **kwargs):
        answers.append(response)

    pconn.session.hooks["response"].append(keep)

    outcome, error = "uploaded", None
    try:
        client.upload(config, pconn, archive, content_type)
    except RuntimeError as e:
        outcome, error = "failed", str(e)

    last = answers[-1] if answers else None
    sent_auth = last.request.headers.get("Authorization", "") if last is not None else ""
    basic = ""
    if sent_auth.startswith("Basic "):
        basic = base64.b64decode(sent_auth[len("Basic "):]).decode()
    print(
        json.dumps(
            {
                "outcome": outcome,
                "error": error,
                "status": last.status_code if last is not None else None,
                "body": last.text if last is not None else None,
                "request_id": last.headers.get("x-rh-insights-request-id") if last is not None else None,
                "basic": basic,
                "logs": logs.messages,
            }
        )
    )


if __name__ == "__main__":
    main()
