-- PostgreSQL's own ceiling for roomd's rows: one transaction advances a
-- room's seq stream by :batch and inserts :batch message-shaped rows, the
-- shape of roomd's storing transaction. Rooms are spread over :rooms.
--
--   pgbench -n -f bench/pg/insert_batch.sql -D batch=50 -D rooms=64 -c 8 -j 2 -T 20 roomd_bench
\set room random(1, :rooms)
begin;
update room_streams set last_seq = last_seq + :batch where room_id = 'pg-' || :room;
insert into messages (room_id, seq, sender_user_id, kind, body, extended_data, priority)
select 'pg-' || :room, s.last_seq - :batch + g, 'pgbench', 'text',
       'B|0|' || g || '|0|' || repeat('x', 40), '', 'medium'
from room_streams s, generate_series(1, :batch) g
where s.room_id = 'pg-' || :room;
commit;
