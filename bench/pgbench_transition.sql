-- What one sagad transition does to the database, as one pgbench transaction
-- (run with -M prepared, like sagad's prepared statements, and
-- -D nsagas=N matching pgbench_seed.sql):
--   BEGIN; read the saga's version (sagad loads the row before applying);
--   insert the consumed message's id into the inbox; update the saga
--   row with its new JSON context where the version is still the one read;
--   insert the next command into the outbox; COMMIT.
-- sagad's transition also writes a history entry and arms or cancels a
-- timer, and it deletes its outbox rows once published; none of that is
-- here, so this ceiling is on the generous side. (Colons are written as
-- chr(58): pgbench would take ':name' inside a string for a variable.)
\set sid random(1, :nsagas)
\set mid random(1, 9223372036854775806)
BEGIN;
SELECT version AS v FROM sagas WHERE id = 'pgb-' || :sid::bigint \gset
INSERT INTO inbox (message_id, saga_id) VALUES ('pgb-reply-' || :mid::bigint, 'pgb-' || :sid::bigint);
UPDATE sagas
   SET status = 'running', current_step = 'charge', version = version + 1, updated_at = now(),
       state = jsonb_set(jsonb_set(state, '{context,steps,reserve}',
                                   jsonb_build_object('reservation_id', 'res-' || :mid::bigint,
                                                      'reserved_at', now())),
                         '{steps,1,status}', '"running"')
 WHERE id = 'pgb-' || :sid::bigint AND version = :v::bigint;
INSERT INTO outbox (saga_id, channel, key, payload, headers)
SELECT 'pgb-' || :sid::bigint, c.channel, 'pgb-' || :sid::bigint,
       convert_to(jsonb_build_object(
           'specversion', '1.0', 'id', 'pgb-' || :sid::bigint || '/charge/do/1',
           'source', 'urn' || c.sep || 'sagad', 'type', 'bench.charge',
           'sagaid', 'pgb-' || :sid::bigint, 'sagatype', 'pgbench_transition',
           'sagastep', 'charge', 'replyto', c.reply_to, 'time', now(),
           'data', jsonb_build_object('order_id', 'order-' || :sid::bigint, 'amount', 42.5,
                                      'reservation_id', 'res-' || :mid::bigint))::text, 'UTF8'),
       jsonb_build_object('content-type', 'application/cloudevents+json')
  FROM (SELECT 'kafka' || chr(58) || 'bench.commands' AS channel, chr(58) AS sep,
               'kafka' || chr(58) || 'saga.replies' AS reply_to) AS c;
COMMIT;
