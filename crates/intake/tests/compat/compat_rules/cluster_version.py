"""Fails a cluster whose `config/version` is older than 4.12, passes the others.

The module is named as the results aggregator wants a rule module (`<word>_<word>`), so its rule id
is `cluster_version|COMPAT_OLD_VERSION`; compat_rules.yaml says the same in intake's declarative
format."""

from insights.core import Parser
from insights.core.context import HostArchiveContext
from insights.core.plugins import make_fail, make_pass, parser, rule
from insights.core.spec_factory import simple_file

version_file = simple_file("config/version", context=HostArchiveContext)

ERROR_KEY = "COMPAT_OLD_VERSION"


@parser(version_file)
class ClusterVersion(Parser):
    def parse_content(self, content):
        self.version = content[0].strip() if content else ""
        parts = self.version.split(".")
        self.major_minor = (int(parts[0]), int(parts[1]))


@rule(ClusterVersion)
def report(version):
    if version.major_minor < (4, 12):
        return make_fail(ERROR_KEY, version=version.version)
    return make_pass(ERROR_KEY, version=version.version)
