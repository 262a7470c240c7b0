"""The router's restart path: orders a killed daemon left live, held for their bots until each
registers again (``JournalAdoption``, a part of ``daemon.router.Router``).

At start, before the sessions adopt the journal's live orders, what happens to each is kept for its
bot (``router_state.journal_holders``); a bot that registers again gets them back with what
happened meanwhile; one that does not within the grace period is taken as dead."""

from __future__ import annotations

import logging

from bots.constants import Status
from daemon.router_state import P_NONE, BotSession, LiveOrder, journal_holders

log = logging.getLogger("hftd.router")


class JournalAdoption:
    """Mixed into ``Router``: uses its ``orderids``, ``sessions``, ``held``, ``by_client``,
    ``policy`` and its ``_window_of``, ``_send``, ``_after_drain``, ``cancel_orders_of``."""

    def hold_journaled(self) -> dict[str, dict[str, str]]:
        """At start, before the sessions adopt the journal's live orders: what happens to each is
        kept for its bot (``router_state.journal_holders``) until the bot registers again.  Returns
        venue -> {client id: symbol}, what each session is to adopt."""
        self.held = journal_holders(self.orderids.live, self.sessions, self._window_of)
        adopt: dict[str, dict[str, str]] = {}
        for h in self.held.values():
            for o in h.orders.values():
                self.by_client[o.client_id] = (h, o)
                a = h.assets[o.asset_no]
                adopt.setdefault(a.venue, {})[o.client_id] = a.symbol
        return adopt

    def release_held(self) -> None:
        """The bots that have not registered again since the restart are taken as dead: the
        dead-bot policy applies to their orders (their history stays for a late return)."""
        for h in self.held.values():
            log.warning("bot %s did not register again after the restart; policy %s on %d order(s)", h.name,
                        self.policy, len(h.orders))
            if self.policy == "cancel":
                self.cancel_orders_of(h)
        self._after_drain()

    def _adopt_journaled(self, bot: BotSession) -> None:
        """Orders of this bot name still live from before a daemon restart follow it again: first
        what happened to them since the restart (the venue's ACCEPTED, which announces each, fills,
        the ends of those that ended), in order, then the bot's own traffic."""
        h = self.held.get(bot.name)
        if h is not None:
            if any(a is not None and (i >= len(bot.assets) or (bot.assets[i].venue, bot.assets[i].symbol)
                                      != (a.venue, a.symbol)) for i, a in enumerate(h.assets)):
                log.warning("bot %s registered with other assets than its journaled orders name: they stay"
                            " with the restart's holder", bot.name)
                return
            del self.held[bot.name]
            for o in h.orders.values():
                bot.orders[o.order_id] = o
                self.by_client[o.client_id] = (bot, o)
            for i, a in enumerate(h.assets):
                if a is not None:
                    bot.positions[i] = h.positions[i]
            for rec in h.held:
                self._send(bot, rec)
            return
        for cid, ref in list(self.orderids.live.items()):
            if ref.bot != bot.name or cid in self.by_client:
                continue
            if ref.asset_no >= len(bot.assets) or bot.assets[ref.asset_no].symbol != ref.symbol:
                continue
            o = LiveOrder(cid, ref.asset_no, ref.order_id, 0, 0.0, 0.0, 0.0, int(Status.NEW), P_NONE)
            bot.orders.setdefault(ref.order_id, o)
            self.by_client[cid] = (bot, o)
