"""Prometheus metrics of the web chat gateway (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("beacon_webchat_connections", "Open chat WebSockets.")
VISITOR_MESSAGES = Counter("beacon_webchat_visitor_messages_total",
                           "Messages visitors sent, by outcome (accepted, duplicate, rate_limited, too_large, "
                           "bad_request, unavailable).", ["outcome"])
REFUSED_SOCKETS = Counter("beacon_webchat_refused_sockets_total",
                          "WebSocket handshakes refused, by reason (origin, cookie).", ["reason"])
REPLIES = Counter("beacon_webchat_replies_total",
                  "bm_out messages for this site, by outcome (delivered = recorded and pushed to open sockets, "
                  "recorded = recorded while the visitor was away, duplicate, skipped).", ["outcome"])
