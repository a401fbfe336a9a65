"""Runs ccx-messaging (its own `ccx-messaging CONFIG` command) unmodified but for one thing: the host
part of its downloader's S3 link pattern.

HTTPDownloader accepts, with `allow_unsafe_links` off, only
`https://s3.<region>.amazonaws.com/<bucket>/<key>?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=…`
(or a `<bucket>.s3.amazonaws.com` host). The test's S3 server is `http://127.0.0.1:<port>`, which no
pattern for AWS hosts can match. So the path-style alternative's scheme and host
(`https://s3\\.[0-9a-zA-Z\\-]+\\.amazonaws\\.com`) is replaced by the test server's, taken from
CCX_S3_ENDPOINT; the bucket, key and query parts stay upstream's. The replacement must happen
exactly once, so a change of the upstream pattern fails the test instead of passing unchecked.
Without CCX_S3_ENDPOINT (localdisk links, `allow_unsafe_links` on) nothing is patched.

Usage: run_ccx.py CONFIG
"""

import os
import re
import sys

from ccx_messaging.downloaders.http_downloader import HTTPDownloader

AWS_PATH_STYLE_HOST = r"https://s3\.[0-9a-zA-Z\-]+\.amazonaws\.com"


def patch_host(endpoint):
    upstream = HTTPDownloader.HTTP_RE.pattern
    if upstream.count(AWS_PATH_STYLE_HOST) != 1:
        sys.exit(f"the upstream link pattern changed: {upstream}")
    HTTPDownloader.HTTP_RE = re.compile(
        upstream.replace(AWS_PATH_STYLE_HOST, re.escape(endpoint.rstrip("/")))
    )


def main():
    endpoint = os.environ.get("CCX_S3_ENDPOINT", "")
    if endpoint:
        patch_host(endpoint)
    from ccx_messaging.command_line import ccx_messaging

    sys.argv = ["ccx-messaging", sys.argv[1]]
    ccx_messaging()


if __name__ == "__main__":
    main()
