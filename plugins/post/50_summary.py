"""Post plugin: one summary line per encoded file in <outbox>/ute-summary.log, and a webhook.

Set UTE_WEBHOOK_URL to also POST the same facts as JSON (e.g. to a chat or home-automation
hook); without it nothing is sent anywhere.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request

from ute import plugin_api
from ute.logsetup import escape_control  # a newline in a name must not split the line


def main() -> int:
    source, output = plugin_api.source(), plugin_api.output()
    assert output is not None, "a post plugin always has UTE_OUTPUT"
    facts = {
        "job": plugin_api.job_id(),
        "source": str(source),
        "output": str(output),
        "output_bytes": output.stat().st_size,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with (output.parent / "ute-summary.log").open("a", encoding="utf-8") as summary:
        summary.write(f"{facts['finished']}  {escape_control(source.name)} -> {escape_control(output.name)}  "
                      f"{facts['output_bytes'] / 1e6:.1f} MB\n")  # fmt: skip
    webhook = os.environ.get("UTE_WEBHOOK_URL")
    if webhook:
        request = urllib.request.Request(webhook, data=json.dumps(facts).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
