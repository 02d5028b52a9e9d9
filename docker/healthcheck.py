"""Docker health check without curl: exit 0 if a GET of the URL answers 2xx, else 1.

    python healthcheck.py [URL]

Without a URL it checks the Prefect worker's own endpoint
(``prefect worker start --with-healthcheck``) on ``PREFECT_WORKER_WEBSERVER_PORT``.
Standard library only: it runs under any Python in the images.
"""

import os
import sys
import urllib.request


def main(argv: list[str]) -> int:
    port = os.environ.get("PREFECT_WORKER_WEBSERVER_PORT", "8080")
    url = argv[1] if len(argv) > 1 else f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 0 if 200 <= response.status < 300 else 1
    except Exception as error:  # HTTPError (e.g. 503), refused, timeout: all unhealthy
        print(f"{url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
