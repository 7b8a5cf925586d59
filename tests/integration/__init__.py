"""Integration tier: one real boundary at a time, inside this process or with a short-lived one.

Belongs here: the store on SQLite and PostgreSQL, the adapters over real HTTP against the simulator, the
simulator itself, an in-process asyncua server (security, PKI, audit trail), the NodeSet import, and the CLI's
admin commands run in-process or as a subprocess against a store file.
"""
