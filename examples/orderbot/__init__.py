"""Orderbot: an example Beacon bot in plain Python (see ``handlers.py`` and the README section
"Write your bot")."""
