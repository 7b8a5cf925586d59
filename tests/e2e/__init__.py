"""End-to-end tier: real `qualitybridge serve` / `demo` / `simulator` processes driven by real OPC UA clients.

Belongs here: the README demo, the whole loop to the ERP, the report methods through a deployment, chaos and
durability (SIGKILL), limits against abuse, and the security matrix. Marked `slow`; `tests.harness` runs them.
"""
