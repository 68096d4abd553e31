"""Starts `herd serve` for the API tests: port 0 (the kernel picks a free
one), then waits for its "listening on <url>" line and keeps draining its
stderr so the server never blocks on a full pipe."""

import re
import subprocess
import threading
import time


def start(herd, args, timeout=60):
    """Returns (process, base URL) of `herd --threads 2 serve --port 0 ARGS`."""
    server = subprocess.Popen([herd, "--threads", "2", "serve", "--port", "0", *args],
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = server.stderr.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            threading.Thread(target=server.stderr.read, daemon=True).start()
            return server, match.group(1)
        if not line and server.poll() is not None:
            break
    server.kill()
    raise RuntimeError("herd serve did not start")
