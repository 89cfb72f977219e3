"""The leader elector: keeps the Lease, starts the driver when this replica leads.

Every replica watches and keeps its cache warm (a hot standby); only the leader's
workers reconcile. A leader that cannot renew for the renew deadline exits at once
(the kubelet restarts it as a standby), so a deposed leader never keeps acting; at
shutdown it hands the Lease back, so a rolling update moves leadership in about one
retry period instead of one lease duration.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime

from kubernetes.client import ApiClient

from .. import metrics
from ..k8s import lease
from . import election

log = logging.getLogger("kubeml")
EXIT_LOST_LEADERSHIP = 3


class Elector:
    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        name: str,
        identity: str,
        on_started: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.on_started, self.clock = on_started, clock
        self.leading = False
        self.last_renewal: datetime | None = None
        metrics.LEADER.labels(identity).set(0)

    async def run(self) -> None:
        while True:
            try:
                won = await asyncio.to_thread(self._round)
            except Exception as err:  # the API may be down: keep trying, the deadline decides
                log.warning("leader election: %s", err)
                won = False
            now = self.clock()
            if won:
                self.last_renewal = now
                if not self.leading:
                    self.leading = True
                    metrics.LEADER.labels(self.identity).set(1)
                    log.info(
                        "leading (lease %s/%s as %s)", self.namespace, self.name, self.identity
                    )
                    self.on_started()
            elif self.leading and not election.still_leading(self.last_renewal, now):
                log.error(
                    "lost the lease %s/%s; exiting so a standby takes over",
                    self.namespace,
                    self.name,
                )
                os._exit(EXIT_LOST_LEADERSHIP)
            await asyncio.sleep(election.RETRY_SECONDS)

    def _round(self) -> bool:
        view, raw = lease.read(self.api, self.namespace, self.name)
        decision = election.decide(view, self.identity, self.clock())
        if decision.spec is None:
            return False
        return lease.write(self.api, self.namespace, self.name, decision.spec, raw)

    def release(self) -> None:
        """Hand the Lease back at shutdown (best effort)."""
        if not self.leading:
            return
        try:
            view, raw = lease.read(self.api, self.namespace, self.name)
            spec = election.release(view, self.identity, self.clock())
            if spec is not None:
                lease.write(self.api, self.namespace, self.name, spec, raw)
                log.info("released the lease %s/%s", self.namespace, self.name)
        except Exception as err:
            log.warning("releasing the lease: %s", err)
        metrics.LEADER.labels(self.identity).set(0)
