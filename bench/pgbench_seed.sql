-- Seeds a migrated database for pgbench_transition.sql: one definition and
-- :nsagas running sagas with a context of the size the benchmark's saga has
-- after its first step. Run with psql -v nsagas=N.
INSERT INTO saga_definitions (name, version, sha256, body)
VALUES ('pgbench_transition', 1, repeat('0', 64), '{"name": "pgbench_transition", "version": 1}');

INSERT INTO sagas (id, type, definition_version, definition_sha256, status, current_step,
                   version, deadline_at, state)
SELECT 'pgb-' || i, 'pgbench_transition', 1, repeat('0', 64), 'running', 'reserve', 1,
       now() + interval '30 minutes',
       jsonb_build_object(
           'id', 'pgb-' || i, 'type', 'pgbench_transition', 'status', 'running',
           'context', jsonb_build_object(
               'saga', jsonb_build_object('id', 'pgb-' || i, 'type', 'pgbench_transition'),
               'input', jsonb_build_object('order_id', 'order-' || i, 'amount', 42.5,
                                           'items', jsonb_build_array('sku-1', 'sku-2', 'sku-3')),
               'steps', '{}'::jsonb),
           'steps', jsonb_build_array(
               jsonb_build_object('name', 'reserve', 'status', 'running', 'attempts', 1),
               jsonb_build_object('name', 'charge', 'status', 'pending', 'attempts', 0),
               jsonb_build_object('name', 'ship', 'status', 'pending', 'attempts', 0)))
FROM generate_series(1, :nsagas) AS i;

VACUUM ANALYZE;
