-- Empty-room destruction and per-process membership.

-- When an empty room is due for destruction: empty_since + its delay, fixed
-- at the moment it emptied, so a restart does not move the deadline. The
-- sweeper finds due rooms through the partial index.
alter table rooms add column destroy_at timestamptz;
update rooms
   set destroy_at = empty_since + make_interval(secs => destroy_delay_secs)
 where empty_since is not null;
create index rooms_destroy_at on rooms (destroy_at) where destroy_at is not null;

-- The roomd process whose connection made the membership, so a process that
-- restarts after a crash removes its own leftovers and nobody else's.
alter table members add column node_id text not null default '';
create index members_by_node on members (node_id);
