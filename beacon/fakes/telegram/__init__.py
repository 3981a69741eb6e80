"""A local fake of Telegram's Bot API (real HTTP), its webhook delivery and ``beacon fake-telegram``."""
