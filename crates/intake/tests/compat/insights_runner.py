"""An insights rules runner behind intake's `external` engine (spec pipeline.md §7.5): ccx-messaging's
own OCPEngine, built as its `ccx-messaging CONFIG` command builds it, run on the tree intake
extracted.

intake writes one JSON object on stdin (`extracted_path`, `plugins`: the configuration's plugins
section verbatim, `target_components`, …) and reads one report on stdout. The engine is built by
insights-core-messaging's AppBuilder from that plugins section and a service section naming
OCPEngine, insights-core's JsonFormat and the target components, exactly as ccx_engine.py builds it
from the ccx-messaging configuration. OCPEngine.process then runs unmodified but for its first step:
the archive is already extracted (by intake, so Python never unpacks the customer's bytes), so
`extract` yields intake's tree instead of unpacking a file. The format's `missing` option is on
because intake's report always carries `skips` (spec pipeline.md §8).

Usage: intake runs `python insights_runner.py` with the job on stdin.
"""

import contextlib
import functools
import json
import sys


@contextlib.contextmanager
def already_extracted(path, timeout=None, extract_dir=None, content_type=None):
    """insights-core's `extract`, for a path intake has extracted already."""
    from insights.core.archives import Extraction

    yield Extraction(path, None)


def main():
    job = json.load(sys.stdin)
    if job.get("protocol") != 1:
        sys.exit(f"unknown protocol {job.get('protocol')!r}")
    # insights-core prints a hint about colours on stdout when it is imported; stdout is the report.
    with contextlib.redirect_stdout(sys.stderr):
        from insights import apply_configs, apply_default_enabled, dr
        from insights.formats._json import JsonFormat
        from insights_messaging.appbuilder import AppBuilder
        from ccx_messaging.engines import ocp_engine

        app = AppBuilder(
            {
                "plugins": job.get("plugins") or {},
                "service": {
                    "format": "insights.formats._json.JsonFormat",
                    "target_components": job.get("target_components") or [],
                    "engine": {"name": "ccx_messaging.engines.ocp_engine.OCPEngine"},
                },
            }
        )
        app._load_plugins()
        apply_default_enabled(app.plugins)
        apply_configs(app.plugins)
        engine = app._get_engine()
        engine.Formatter = functools.partial(JsonFormat, missing=True)
        ocp_engine.extract = already_extracted
        report = engine.process(dr.Broker(), job["extracted_path"])
    sys.stdout.write(report)


if __name__ == "__main__":
    main()
