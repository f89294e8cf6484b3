"""Whether the serving API serves the registry's Production version, as a log line a minute.

The serving API publishes the gauge `serving_behind_registry` (1 when Production in the
registry is a version it does not serve, 0 otherwise) on `/metrics`. This script runs in a
second, non-essential container of each serving task (the serving image's own Python,
standard library only), reads the gauge over the task's loopback and prints one JSON line
per reading to the task's log group, where a CloudWatch Logs metric filter turns it into
the metric the "serving behind the registry" alarm watches (alarms.py). A reading that
fails prints the reason instead, which no filter counts: missing data, not a false alarm.

The stack passes this file's text to `python -c`; REGISTRY_WATCH_URL, _SECONDS and _COUNT
(0: for ever) are for the tests.
"""

import json
import os
import re
import time
import urllib.request

GAUGE = re.compile(r"^serving_behind_registry(?:\{[^}]*\})?\s+(\S+)\s*$", re.MULTILINE)
URL = os.environ.get("REGISTRY_WATCH_URL", "http://127.0.0.1:8000/metrics")
SECONDS = float(os.environ.get("REGISTRY_WATCH_SECONDS", "60"))
COUNT = int(os.environ.get("REGISTRY_WATCH_COUNT", "0"))


def reading() -> dict[str, object]:
    try:
        with urllib.request.urlopen(URL, timeout=10) as answer:  # noqa: S310 - loopback
            text = answer.read().decode()
    except OSError as err:
        return {"registry_watch_error": f"{URL}: {type(err).__name__}"}
    found = GAUGE.search(text)
    if found is None:
        return {"registry_watch_error": f"{URL}: no serving_behind_registry gauge"}
    return {"serving_behind_registry": float(found.group(1))}


done = 0
while COUNT == 0 or done < COUNT:
    if done:
        time.sleep(SECONDS)
    print(json.dumps(reading()), flush=True)
    done += 1
