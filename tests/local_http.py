"""One HTTP client for the tests' requests to the processes they start (health, readiness and metrics polls).

``httpx.get()`` builds a client for every call, with an SSL context loaded from the CA bundle: measured, about
50 ms of CPU per call against about 1 ms on a kept client, and the fixtures poll every 0.1-0.3 s while a process
starts (competing with it for the CPU). Without keep-alive every request opens its own connection, as
``httpx.get()`` does, so a process restarted on the same port is never asked on its predecessor's connection.
"""

from __future__ import annotations

import httpx

local_http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
