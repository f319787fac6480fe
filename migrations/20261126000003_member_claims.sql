-- When a membership was last claimed by a connection (joined or re-joined).
-- After a restart, memberships of this node not claimed again within the
-- reconnect grace are the ones whose users did not come back.
alter table members add column claimed_at timestamptz not null default now();
