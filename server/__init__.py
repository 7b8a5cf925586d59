"""The OPC UA face of QualityBridge, on asyncua.

| folder or module  | what it does                                                                             |
| ----------------- | ---------------------------------------------------------------------------------------- |
| `address_space/`  | the QualityBridge namespace and the view of the store in it: nodes, events, diagnostics  |
| `methods/`        | the OPC UA methods clients call: argument checks, calls into the services, StatusCodes   |
| `security/`       | accounts and roles, permissions, session hooks, auditing; secure by default              |
| `pki/`            | the own certificate and the trust list of client certificates, on disk                   |
| `limits/`         | limits against abuse: sessions, request rate and size, subscriptions, chunk size, logins |
| `opcua_server.py` | assembles the asyncua server: endpoint, limits, security and the QualityBridge model     |

Layer rule: server may import services, store, domain and config; nothing below imports server.
"""
