"""The domain: QualityBridge's quality data and rules, with no OPC UA, HTTP or SQL in it.

| module         | what it holds                                                                    |
| -------------- | -------------------------------------------------------------------------------- |
| `model`        | orders, operations, characteristics, gauges, reports, results, ERP snapshots/deltas |
| `records`      | what the store keeps of a report: accepted/refused measurements, confirmations, alarms |
| `plan_versions`| which plan version was in force at a measurement's time; what a new version supersedes |
| `order_states` | the ISA-95 order state machine and what each state accepts                       |
| `errors`       | refusals, each naming the argument at fault                                      |
| `events`       | domain events in the past tense, raised on the bus after a fact is stored        |
| `postings`     | the tagged union of what is owed to the ERP/QMS, and the outbox entry            |
| `ports`        | what the core needs from outside: master-data source, posting target, publisher  |
| `audit`        | audit entries                                                                    |
| `ids`          | identifiers given to accepted records                                            |
| `units`        | UNECE unit codes for EUInformation                                               |

The lowest layer: it imports nothing of QualityBridge outside itself.
"""
