"""The OPC UA methods of the QualityBridge object: argument checks, calls into the services, answers.

| module               | what it does                                                             |
| -------------------- | ------------------------------------------------------------------------ |
| `arguments`          | checking the Variants a client sent, naming the argument that is wrong   |
| `results`            | refusals mapped to StatusCodes; every answer built the same way          |
| `measurements`       | ReportMeasurement and ReportMeasurements (one path; one answer per entry) |
| `production_reports` | ReportConfirmation, ReportSpcAlarm                                       |
| `orders`             | StartOrder, InterruptOrder, ResumeOrder, EndOrder, AbortOrder            |
| `linking`            | every method bound to its node in one place                              |
"""
