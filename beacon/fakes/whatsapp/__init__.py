"""A local fake of the WhatsApp Cloud API: the send endpoint, media, error injection, and Meta's
side of webhooks (signed, batched, retried POSTs to a gateway)."""
