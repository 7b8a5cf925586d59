"""Application services: the business rules between the OPC UA face and the store.

| module           | what it does                                                                  |
| ---------------- | ----------------------------------------------------------------------------- |
| `master_data`    | released orders and gauges in memory, indexed for the report path              |
| `reporting`      | measurements: validated, judged, stored with their outbox rows                 |
| `confirmations`  | production confirmations: quantities checked against the order, stored, queued |
| `spc_alarms`     | SPC alarms reported by machines: stored, queued for the QMS                    |
| `order_control`  | ISA-95 order state changes from the shop floor                                 |
| `erp_sync`       | ERP → store → master data, one sync round at a time                            |
| `outbox_relay`   | store → ERP: the outbox delivered in order per order, retried, dead-lettered   |
| `audit_trail`    | who did what, written in batches off the report path                           |
| `diagnostics`    | health figures: sync freshness, sync findings, outbox backlog                  |
| `event_bus`      | the one in-process path domain events take to the publishers                   |

Services import the domain and the store, never the OPC UA server, the adapters or the CLI.
"""
