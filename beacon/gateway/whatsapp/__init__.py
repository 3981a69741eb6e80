"""The WhatsApp channel: Cloud API webhooks into ``bm_in``, ``bm_out`` back out through the Cloud API."""

CHANNEL = "whatsapp"
