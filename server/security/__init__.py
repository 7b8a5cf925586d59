"""Secure by default: who is connected, what each role may do, and what is audited.

| module          | what it does                                                                   |
| --------------- | ------------------------------------------------------------------------------ |
| `identity`      | accounts, roles, and the asyncua user manager that logs them in                |
| `access`        | which role may use which OPC UA service; who the caller of a method is         |
| `permissions`   | the one permission table methods and writes are checked against                |
| `role_set`      | QualityBridge roles as OPC UA well-known roles (Part 18)                       |
| `session_hooks` | what QualityBridge needs to see of every session that asyncua has no API for   |
| `audit_events`  | audit entries as OPC UA AuditEvents                                            |
| `setup`         | the one call that makes an asyncua Server secure for QualityBridge             |
| `jobs`          | scheduled security work: account refresh, trust-list reload, own certificate   |
"""
