"""Job events pushed to callers: the payloads (:mod:`.payload`), the bus that wakes listeners
across processes (:mod:`.bus`) and the readers that follow the event log (:mod:`.follow`).

The event log in the store is the truth; the bus only says "look again"."""
