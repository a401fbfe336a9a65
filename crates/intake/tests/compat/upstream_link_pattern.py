"""Checks links against ccx-messaging's unmodified HTTPDownloader pattern, each with its scheme and
host replaced by an AWS path-style one (`https://s3.us-east-1.amazonaws.com`): the part of the link
intake chooses (bucket, key, query) is what the pattern sees.

Usage: upstream_link_pattern.py URL...  Prints one line per URL: `match` or `no-match`.
"""

import sys
from urllib.parse import urlsplit, urlunsplit

from ccx_messaging.downloaders.http_downloader import HTTPDownloader

for url in sys.argv[1:]:
    parts = urlsplit(url)
    on_aws = urlunsplit(("https", "s3.us-east-1.amazonaws.com", parts.path, parts.query, ""))
    print("match" if HTTPDownloader.HTTP_RE.fullmatch(on_aws) else "no-match")
