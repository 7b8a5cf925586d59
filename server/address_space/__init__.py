"""The address space as a view of the store: the QualityBridge namespace, its instances, and its events.

| module             | what it does                                                                |
| ------------------ | --------------------------------------------------------------------------- |
| `namespace`        | namespace URI, the NodeSet that defines it, the NodeId scheme of instances  |
| `view`             | orders, characteristics, gauges and diagnostics as nodes, updated by diff   |
| `spc_alarm_events` | SPC alarms as SpcAlarmEventType events on the QualityBridge object          |
"""
