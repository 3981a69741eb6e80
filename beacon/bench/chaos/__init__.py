"""``beacon bench chaos``: a steady load through a whole local stack of its own while faults are injected
one after another, measured as a table (offered, answered, lost, duplicates, order, dead letters, drain).

Modules: ``stack`` starts and breaks the stack, ``postgres`` a PostgreSQL cluster of its own, ``load`` the
simulated users and the reply accounting, ``faults`` what each fault does, ``run`` the rows and the table.
"""
