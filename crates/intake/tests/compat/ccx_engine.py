"""Runs ccx-messaging's engine on local archives, without Kafka: the engine its `ccx-messaging
CONFIG` command would build from CONFIG (insights-core-messaging's AppBuilder: the plugins section
loaded and configured, then the `service.engine` with `service.format` and
`service.target_components`), given each archive path as its HTTPDownloader would give it the
downloaded file. Consumer, downloader and publisher are left out: the Kafka round trips are tested
on their own; this is the part that turns an archive into a report.

Prints one JSON line per archive on stdout:
  {"archive": PATH, "published": REPORT, "with_skips": REPORT}
`published` is the report as ccx-messaging's publisher gets it and sends it as its message's
`Report` (the configured format, insights-core's JsonFormat, which leaves out the `skips` bucket); `with_skips` is the same engine with that format's
`missing` option on, so the skipped rules it computed are compared too. A report that could not be
made is {"error": "<exception>"} instead.

Usage: ccx_engine.py CONFIG ARCHIVE...
"""

import contextlib
import functools
import json
import sys


def main():
    config, archives = sys.argv[1], sys.argv[2:]
    # insights-core prints a hint about colours on stdout when it is imported; stdout is the report.
    with contextlib.redirect_stdout(sys.stderr):
        from insights import apply_configs, apply_default_enabled, dr
        from insights.formats._json import JsonFormat
        from insights_messaging.appbuilder import AppBuilder

        with open(config) as f:
            app = AppBuilder(f.read())
        app._load_plugins()
        apply_default_enabled(app.plugins)
        apply_configs(app.plugins)
        engine = app._get_engine()
    published = engine.Formatter
    if published is not JsonFormat:
        sys.exit(f"the configuration's format is {published}, not insights-core's JsonFormat")
    for path in archives:
        line = {"archive": path}
        for name, formatter in (
            ("published", published),
            ("with_skips", functools.partial(JsonFormat, missing=True)),
        ):
            engine.Formatter = formatter
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    line[name] = json.loads(engine.process(dr.Broker(), path))
            except Exception as e:  # noqa: BLE001 - reported per archive, compared by the test
                line[name] = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
