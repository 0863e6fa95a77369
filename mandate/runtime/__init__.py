"""The runtime room: settings, the composition root (:mod:`.services`), the run engine, and the
thread, assistant, call-ledger and session stores. It knows nothing of HTTP."""
