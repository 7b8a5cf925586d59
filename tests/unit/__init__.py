"""Unit tier: pure rules in seconds, with no socket, child process or database.

Belongs here: the domain's rules (order states, model validation), the services' business rules against the
in-memory fakes of `tests.fakes`, the event bus, configuration parsing, pure parts of the server (token bucket,
login throttle), the public surface, the layer contract, and documentation checks that need no server.
"""
