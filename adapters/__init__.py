"""ERP/QMS adapters: the domain's ports (`ErpClient`) implemented over a real protocol.

| module          | what it does                                                                   |
| --------------- | ------------------------------------------------------------------------------ |
| `rest_contract` | the generic REST contract v1: DTOs, paths, headers (docs/erp-rest-contract.md)  |
| `rest_erp`      | the ErpClient over that contract with httpx; failures sorted into the port's two |
| `factory`       | the adapter a configuration names                                              |

Mounted as `qualitybridge.adapters`; adapters import the domain (and the config), never the store or services.
"""
