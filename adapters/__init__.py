"""ERP/QMS adapters: the domain's ports (`MasterDataSource`, `PostingTarget`, `ErpClient`) over a real protocol.

| module          | what it does                                                                      |
| --------------- | --------------------------------------------------------------------------------- |
| `rest_contract` | the generic REST contract v1: DTOs, paths, headers (docs/erp-rest-contract.md)     |
| `rest_erp`      | the ports over that contract with httpx; failures sorted into the port's two        |
| `sap_odata`     | SAP Gateway OData V2 wire facts: services, units, dates, error bodies               |
| `sap_s4hana`    | the ports over SAP S/4HANA's OData APIs (docs/sap-s4hana.md)                       |
| `combined`      | an ERP and a QMS as one source and target (`[qms]`)                                |
| `factory`       | the adapters a configuration names, with their secrets                             |

Mounted as `qualitybridge.adapters`; adapters import the domain (and the config), never the store or services.
"""
