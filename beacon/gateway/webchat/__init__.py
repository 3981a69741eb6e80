"""The web chat channel: a page served by its gateway, visitors talking to the bot over a WebSocket."""

CHANNEL = "webchat"
