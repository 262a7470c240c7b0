"""Order entry at the venues: one execution session per venue behind one interface (``base``).

The router (``daemon.router``) owns bots and their order ids; an execution session owns one venue
account's connections (websocket API, signed REST, user stream), its rate limits and the
reconciliation of ambiguous replies, and reports a clean event stream: per order one ACCEPTED (or
REJECTED), each fill once, exactly one terminal state.
"""
