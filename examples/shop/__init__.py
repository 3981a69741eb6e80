"""Shop: an example Beacon bot. Order lookup from its own table (``orders.py``, migrated by its
own Alembic environment, ``migrate.py``), a button menu, a multi-step return flow, handoff to a
human, and an order-lookup tool for the LLM agent (``bot.py``). See the README, "Write your bot"."""
