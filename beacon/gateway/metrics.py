"""Prometheus metrics of every channel gateway (process-wide, labelled by channel, served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS = Counter("beacon_gateway_webhooks_total", "Webhook POSTs by outcome (accepted or the rejection reason).",
                   ["channel", "outcome"])
WEBHOOK_MESSAGES = Counter("beacon_gateway_webhook_messages_total",
                           "Messages and statuses produced to bm_in from webhooks.", ["channel"])
WEBHOOK_DROPPED = Counter("beacon_gateway_webhook_dropped_total",
                          "Webhook items dropped (no id, no usable sender, unparseable, unencodable), by what.",
                          ["channel", "what"])
WEBHOOK_TOO_LARGE = Counter("beacon_gateway_webhook_too_large_total",
                            "Inbound messages too large for a record, delivered as unsupported without content.",
                            ["channel"])
PRODUCE_SECONDS = Histogram("beacon_gateway_produce_seconds",
                            "Time from a webhook's arrival to the broker's acknowledgement of all its messages.",
                            ["channel"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
SENDS = Counter("beacon_gateway_sends_total", "Outbound messages settled, by outcome and the channel's error code.",
                ["channel", "outcome", "code"])
SEND_ERRORS = Counter("beacon_gateway_send_errors_total",
                      "Failed send attempts by the channel's error code and the action taken.",
                      ["channel", "code", "action"])
SEND_SECONDS = Histogram("beacon_gateway_send_seconds", "Duration of one send request to the channel's API.",
                         ["channel"])
LIMITER_WAIT = Histogram("beacon_gateway_limiter_wait_seconds",
                         "Time a send waited for a rate limiter or backoff, by scope (account, user).",
                         ["channel", "scope"], buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300))
POSSIBLE_DUPLICATES = Counter("beacon_gateway_possible_duplicate_sends_total",
                              "Sends retried after a restart found them in flight: the channel may have "
                              "accepted the first attempt.", ["channel"])
OUTAGES = Counter("beacon_gateway_outages_total",
                  "Times a channel's API started failing for an account (its sends paused and probed).",
                  ["channel"])
MEDIA_REQUESTS = Counter("beacon_gateway_media_requests_total",
                         "Media asked of the gateway by the API, by outcome (cached, fetched, not_found, too_large, "
                         "channel_error, unauthorized).", ["channel", "outcome"])
