"""Build the cluster runtime from the settings: only with ``cluster.node_id`` and PostgreSQL.

Without a node id the hub is the only one and owns every community, exactly as before (the
embedded default needs nothing but Python). A node id with a SQLite store is refused: a file
on one machine cannot be shared by hubs on several, and leases there would fence nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from adapters.router import FamilySource
from hub.cluster.events import Change, ClusterEvents
from hub.cluster.renewer import LeaseRenewer
from hub.cluster.runtime import ROUNDS_PER_LEASE, ClusterRuntime
from hub.cluster.sessions import CommunitySessions
from hub.cluster.takeover import RuleState, Takeover
from hub.community.registry import Registry
from hub.config import Settings
from hub.errors import ConfigError
from hub.mqtt.client import MessageHandler, UnhandledHandler
from hub.storage.engine import Dialect
from hub.storage.leases import LeaseStore
from hub.storage.scope import WHOLE_HUB
from hub.storage.store import Store
from rules.signals import Signal


def community_topics(
    registry: Registry,
    community: str,
    *,
    reply_subscription: Callable[[str], str],
    hub_wide: Sequence[FamilySource],
) -> list[str]:
    """What the owner of ``community`` subscribes to: its gateways' roots and its workers' replies.

    The hub-wide partition's owner subscribes to the roots of ``sources`` in the settings
    (gateways shared by several communities, devices not registered yet).
    """
    filters: list[str] = []
    if community == WHOLE_HUB:
        for shared in hub_wide:
            filters.extend(f for f in shared.subscriptions() if f not in filters)
        return filters
    for found in registry.communities:
        if found.code == community:
            for source in found.sources:
                filters.extend(
                    f for f in source.as_family_source(found.code).subscriptions() if f not in filters
                )
    filters.append(reply_subscription(community))
    return filters


def community_sources(registry: Registry) -> list[FamilySource]:
    """Every community's own gateway roots, for the adapter router (decoding by topic)."""
    return [source.as_family_source(c.code) for c in registry.communities for source in c.sources]


def owned_signals(signals: Sequence[Signal], *, registry: Registry, owned: frozenset[str]) -> list[Signal]:
    """Rule-timer signals for devices of communities this node owns (the others are their owners')."""
    kept = []
    for signal in signals:
        community = registry.subject(signal.subject).community
        if (community or WHOLE_HUB) in owned:
            kept.append(signal)
    return kept


def cluster_runtime(
    *,
    settings: Settings,
    store: Store,
    registry: Registry,
    on_message: MessageHandler,
    on_unhandled: UnhandledHandler,
    reply_subscription: Callable[[str], str],
    rules: RuleState,
    wake_casework: Callable[[], None],
    on_remote: Callable[[Change], None],
) -> ClusterRuntime | None:
    """``on_remote``: another node changed an alert or a case (show it on this node's stream)."""
    node_id = settings.cluster.node_id
    if node_id is None:
        return None
    if store.dialect is not Dialect.POSTGRESQL:
        raise ConfigError(
            "a cluster node needs a PostgreSQL store (store.url = postgresql://…)", key="cluster.node_id"
        )
    url = settings.store.resolved_url(Path(settings.data_dir))
    leases = LeaseStore(store=store, node_id=node_id, lease_s=settings.cluster.lease_s)
    hub_wide = [FamilySource(s.family, s.base_topic) for s in settings.sources]
    runtime: ClusterRuntime
    sessions = CommunitySessions(
        url=settings.mqtt.parsed_url,
        topics=lambda community: community_topics(
            registry, community, reply_subscription=reply_subscription, hub_wide=hub_wide
        ),
        on_message=on_message,
        on_unhandled=on_unhandled,
        on_fenced=lambda community: runtime.fenced(community),  # noqa: PLW0108 - runtime is built below
        tls_ca_file=str(settings.mqtt.tls_ca_file) if settings.mqtt.tls_ca_file else None,
    )
    takeover = Takeover(
        registry=registry,
        rules=rules,
        owned=lambda: runtime.scope(),  # noqa: PLW0108 - runtime is built below
        wake_casework=wake_casework,
    )
    runtime = ClusterRuntime(
        leases=leases,
        communities=lambda: [c.code for c in registry.communities],
        sessions=sessions,
        on_gained=takeover.gained,
        on_lost=takeover.lost,
        events=ClusterEvents(url=url, node_id=node_id, on_remote=on_remote),
        renewer=LeaseRenewer(
            url=url,
            node_id=node_id,
            lease_s=settings.cluster.lease_s,
            period_s=settings.cluster.lease_s / ROUNDS_PER_LEASE,
        ),
    )
    store.install_fence(runtime.fence)
    return runtime
