-- A room's current life and who started it.
--
-- first_seq: the first seq of this life. A room created again under a
-- destroyed room's id continues the seq stream, but its members see only
-- messages from here on; the admin token reads every life. Rooms that
-- existed before this migration show their whole stream (1).
alter table rooms add column first_seq bigint not null default 1 check (first_seq >= 1);

-- created_by: the user whose request created the room (null: none known).
-- A user's live rooms count against --max-created-rooms-per-user, so one
-- user cannot fill --max-rooms with empty rooms waiting out a long delay.
alter table rooms add column created_by text;
create index rooms_by_creator on rooms (created_by) where created_by is not null;
