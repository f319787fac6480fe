-- Rooms, their members, and the messages sent to them.
--
-- A room's seq stream lives in room_streams, not in rooms: destroying a room
-- deletes its rooms row (and, by cascade, its members) but keeps the stream
-- and the history, so a room created later under the same id continues the
-- same seq numbers.

create table room_streams (
    room_id  text primary key,
    -- Highest seq handed out; the next message gets last_seq + 1. Updated in
    -- the transaction that stores the message, so seq has no gaps.
    last_seq bigint not null default 0 check (last_seq >= 0)
);

create table rooms (
    room_id            text primary key references room_streams (room_id),
    room_name          text not null,
    -- Seconds an empty room waits before it is destroyed.
    destroy_delay_secs integer not null check (destroy_delay_secs between 0 and 10800),
    attributes         jsonb not null default '{}'::jsonb,
    created_at         timestamptz not null default now(),
    -- Set when the last member leaves, cleared when someone joins.
    empty_since        timestamptz
);

create table members (
    room_id   text not null references rooms (room_id) on delete cascade,
    user_id   text not null,
    user_name text not null,
    joined_at timestamptz not null default now(),
    -- Member lists page by user id within a room.
    primary key (room_id, user_id)
);

-- "Which rooms is this user in" (leaving everything, per-user limits).
create index members_by_user on members (user_id);

create table messages (
    -- The server-unique messageID.
    id                bigint generated always as identity primary key,
    room_id           text not null references room_streams (room_id),
    seq               bigint not null,
    sender_user_id    text not null,
    kind              text not null check (kind in ('text', 'command', 'barrage', 'custom')),
    body              text not null,
    extended_data     text not null,
    priority          text not null check (priority in ('low', 'medium', 'high')),
    client_message_id text,
    created_at        timestamptz not null default now()
);

-- History pages are range scans on (room_id, seq); it also makes seq unique.
create unique index messages_room_seq on messages (room_id, seq);

-- A resend with the same clientMessageID finds the original instead of storing twice.
create unique index messages_client_message_id
    on messages (room_id, sender_user_id, client_message_id)
    where client_message_id is not null;

-- REST history filtered by time (since/until) within a room.
create index messages_room_created on messages (room_id, created_at);
