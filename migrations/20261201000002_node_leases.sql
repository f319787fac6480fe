-- Node leases: each running roomd process holds one, renews it while it
-- runs, and is treated as gone once it lapses. Another node then removes
-- the memberships the gone node held (after the reconnect grace), so a
-- crashed or recreated node's members do not stay forever.
create table nodes (
    node_id     text primary key,
    -- A fresh value per start and per re-registration: a renewal that
    -- finds another (or none) knows its lease was taken away (fencing).
    incarnation bigint not null,
    started_at  timestamptz not null default now(),
    renewed_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    -- WebSocket sessions open on the node at its last renewal.
    connections integer not null default 0
);

-- The sweeper finds lapsed leases by their expiry.
create index nodes_expires_at on nodes (expires_at);
