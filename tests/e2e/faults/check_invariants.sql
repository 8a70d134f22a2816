-- check_invariants.sql: what must hold once a fault scenario has drained,
-- over sagad's tables and the participant's effects (participant_effects:
-- one row per command id; "none" = recorded, not answered). Run by
-- check_invariants.sh, which sets the psql variables
--   sagas     the number of sagas the scenario started
--   expected  a VALUES list (prefix, 'status,status') of allowed final
--             statuses by saga id prefix (an exact id when it ends with $,
--             which wins; else the longest prefix wins; a saga nothing
--             matches must be completed or compensated)
--   dead      a VALUES list (md5) of the messages injected to be
--             dead-lettered, or a list with one NULL
-- Each check prints one row: CHECK|name|violations|examples|what it means.
-- The last row: FIGURES|key=value ... for the summary.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only on
\pset fieldsep '|'
-- Read only: everything happens in a transaction rolled back at the end,
-- on one snapshot (repeatable read), so that a message still arriving
-- cannot make the tables disagree. 'before' (a file, default /dev/null)
-- runs first in it: the checker's own test uses it to break the data on
-- purpose.
BEGIN ISOLATION LEVEL REPEATABLE READ;
\i :before

CREATE TEMP TABLE fx_expected (prefix text, statuses text[]);
INSERT INTO fx_expected SELECT p, string_to_array(s, ',') FROM (VALUES :expected) v(p, s);
CREATE TEMP TABLE fx_dead AS SELECT m FROM (VALUES :dead) v(m) WHERE m IS NOT NULL;

-- Each step of each saga: its state, and its place in the definition
-- (idx: top-level position, shared by the members of a parallel group).
CREATE TEMP TABLE fx_defsteps AS
SELECT d.name AS type, d.version, s.ord AS idx,
       COALESCE(m.value, s.value)->>'name' AS step,
       (COALESCE(m.value, s.value) ? 'compensation') AS has_comp,
       COALESCE((COALESCE(m.value, s.value)->>'pivot')::boolean, false) AS pivot
FROM saga_definitions d
CROSS JOIN LATERAL jsonb_array_elements(d.body->'steps') WITH ORDINALITY AS s(value, ord)
LEFT JOIN LATERAL jsonb_array_elements(s.value->'parallel') AS m(value) ON true;

CREATE TEMP TABLE fx_steps AS
SELECT s.id AS saga_id, s.status AS saga_status, st.value->>'name' AS step,
       st.value->>'status' AS status, COALESCE((st.value->>'unknown')::boolean, false) AS unknown,
       d.idx, d.has_comp
FROM sagas s
CROSS JOIN LATERAL jsonb_array_elements(s.state->'steps') AS st(value)
JOIN fx_defsteps d ON d.type = s.type AND d.version = s.definition_version
                  AND d.step = st.value->>'name';

CREATE TEMP TABLE fx_sent AS
SELECT saga_id, seq, step, detail->>'id' AS id, (detail->>'undo')::boolean AS undo,
       (detail->>'attempt')::int AS attempt
FROM saga_history WHERE event = 'command.sent';
CREATE INDEX ON fx_sent (id);
CREATE INDEX ON fx_sent (saga_id, step);

CREATE TEMP TABLE fx_inputs AS
SELECT saga_id, seq, event, step, detail->'input'->>'kind' AS kind,
       detail->'input'->>'timer' AS timer, (detail->'input'->>'attempt')::int AS attempt,
       detail->'input'->>'causation_id' AS causation_id, detail->'input'->>'outcome' AS outcome,
       (detail ? 'ignored') AS ignored
FROM saga_history WHERE event LIKE 'input.%';
CREATE INDEX ON fx_inputs (causation_id);
CREATE INDEX ON fx_inputs (saga_id, step);

CREATE TEMP TABLE fx_effects AS
SELECT e.*, split_part(e.command_id, '/', 3) = 'undo' AS is_undo FROM participant_effects e;
CREATE INDEX ON fx_effects (command_id);
CREATE INDEX ON fx_effects (saga_id, step);

-- An effect whose answer the saga never applied is explained when its
-- attempt timed out, or the step was abandoned in flight (abort, deadline).
CREATE TEMP TABLE fx_explained AS
SELECT e.command_id FROM fx_effects e
JOIN fx_sent c ON c.id = e.command_id
WHERE EXISTS (SELECT 1 FROM fx_inputs i WHERE i.saga_id = e.saga_id AND i.step = e.step
                AND i.kind = 'timer' AND NOT i.ignored AND i.attempt = e.attempt
                AND i.timer = CASE WHEN e.is_undo THEN 'compensation_timeout' ELSE 'step_timeout' END)
   OR EXISTS (SELECT 1 FROM saga_history h WHERE h.saga_id = e.saga_id AND h.step = e.step
                AND h.event = 'step.timed_out' AND h.seq > c.seq);

CREATE UNIQUE INDEX ON fx_explained (command_id);

CREATE TEMP TABLE fx_accepted AS
SELECT i.saga_id, i.step, i.causation_id, i.outcome,
       split_part(i.causation_id, '/', 3) = 'undo' AS is_undo
FROM fx_inputs i WHERE i.kind = 'reply' AND NOT i.ignored;
CREATE INDEX ON fx_accepted (causation_id);
CREATE INDEX ON fx_accepted (saga_id, step);

ANALYZE fx_defsteps;
ANALYZE fx_steps;
ANALYZE fx_sent;
ANALYZE fx_inputs;
ANALYZE fx_effects;
ANALYZE fx_explained;
ANALYZE fx_accepted;

-- a check: name, violations, up to 5 examples, meaning
CREATE TEMP TABLE fx_out (ord serial, name text, n bigint, examples text, what text);

INSERT INTO fx_out (name, n, examples, what)
SELECT 'all sagas started', abs(count(*) - :sagas), count(*) || ' of ' || :sagas,
       'every start sent made exactly one saga' FROM sagas;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'final status', count(*), string_agg(id || '=' || status, ' ') FILTER (WHERE rn <= 5),
       'every saga is finished, with a status its scenario allows'
FROM (SELECT s.id, s.status, row_number() OVER () AS rn
      FROM sagas s
      LEFT JOIN LATERAL (SELECT statuses FROM fx_expected x
                         WHERE s.id = rtrim(x.prefix, '$')
                            OR (x.prefix NOT LIKE '%$' AND left(s.id, length(x.prefix)) = x.prefix)
                         ORDER BY (x.prefix LIKE '%$') DESC, length(x.prefix) DESC LIMIT 1) x ON true
      WHERE NOT s.status = ANY (COALESCE(x.statuses, ARRAY['completed', 'compensated']))) v;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'outbox empty', count(*), string_agg(DISTINCT channel, ' '),
       'every message to send was sent and deleted' FROM outbox;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'no timers left', count(*), string_agg(t.saga_id || ':' || t.kind, ' ') FILTER (WHERE rn <= 5),
       'a completed or compensated saga waits for nothing (a failed one may keep its deadline)'
FROM (SELECT t.*, row_number() OVER () AS rn FROM timers t JOIN sagas s ON s.id = t.saga_id
      WHERE s.status IN ('completed', 'compensated')) t;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'no command lost', count(*), string_agg(c.id, ' ') FILTER (WHERE rn <= 5),
       'every command a saga sent reached the participant'
FROM (SELECT c.*, row_number() OVER () AS rn FROM fx_sent c
      WHERE NOT EXISTS (SELECT 1 FROM fx_effects e WHERE e.command_id = c.id)) c;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'no phantom command', count(*), string_agg(command_id, ' ') FILTER (WHERE rn <= 5),
       'every command the participant got is one a saga recorded as sent'
FROM (SELECT e.command_id, row_number() OVER () AS rn FROM fx_effects e
      WHERE NOT EXISTS (SELECT 1 FROM fx_sent c WHERE c.id = e.command_id AND c.saga_id = e.saga_id)) e;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'no reply lost', count(*), string_agg(command_id || '=' || outcome, ' ') FILTER (WHERE rn <= 5),
       'every answer was applied, unless its attempt had timed out or was abandoned'
FROM (SELECT e.command_id, e.outcome, row_number() OVER () AS rn FROM fx_effects e
      WHERE NOT EXISTS (SELECT 1 FROM fx_accepted a WHERE a.causation_id = e.command_id)
        AND NOT EXISTS (SELECT 1 FROM fx_explained x WHERE x.command_id = e.command_id)) e;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'answers agree', count(*), string_agg(a.causation_id, ' ') FILTER (WHERE rn <= 5),
       'each applied answer has the outcome the participant recorded'
FROM (SELECT a.*, row_number() OVER () AS rn FROM fx_accepted a
      JOIN fx_effects e ON e.command_id = a.causation_id WHERE e.outcome <> a.outcome) a;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'one success applied per step', count(*), string_agg(saga_id || '/' || step, ' ') FILTER (WHERE rn <= 5),
       'a saga never applied two successes of one step (or of its compensation)'
FROM (SELECT saga_id, step, row_number() OVER () AS rn FROM fx_accepted WHERE outcome = 'success'
      GROUP BY saga_id, step, is_undo HAVING count(*) > 1) x;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'no effect twice', count(*), string_agg(saga_id || '/' || step, ' ') FILTER (WHERE rn <= 5),
       'a step took effect more than once only when an attempt of it timed out'
FROM (SELECT e.saga_id, e.step, e.is_undo, row_number() OVER () AS rn FROM fx_effects e
      LEFT JOIN fx_explained x ON x.command_id = e.command_id
      WHERE e.outcome = 'success'
      GROUP BY e.saga_id, e.step, e.is_undo
      HAVING count(*) > 1 + count(x.command_id)) v;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'completed sagas ran every step', count(*), string_agg(saga_id || '/' || step, ' ') FILTER (WHERE rn <= 5),
       'each step of a completed saga succeeded, by an answer the participant recorded as a success'
FROM (SELECT s.saga_id, s.step, row_number() OVER () AS rn FROM fx_steps s
      WHERE s.saga_status = 'completed'
        AND (s.status <> 'succeeded' OR NOT EXISTS (
               SELECT 1 FROM fx_accepted a JOIN fx_effects e ON e.command_id = a.causation_id
               WHERE a.saga_id = s.saga_id AND a.step = s.step AND NOT a.is_undo
                 AND a.outcome = 'success' AND e.outcome = 'success'))) x;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'completed sagas undid nothing', count(*), string_agg(command_id, ' ') FILTER (WHERE rn <= 5),
       'no compensation was sent for a completed saga'
FROM (SELECT e.command_id, row_number() OVER () AS rn FROM fx_effects e JOIN sagas s ON s.id = e.saga_id
      WHERE s.status = 'completed' AND e.is_undo) x;

-- needed: the step has a compensation and took effect, or may have
-- (answered success, never answered, or an attempt timed out)
INSERT INTO fx_out (name, n, examples, what)
SELECT 'compensated exactly what needed it', count(*),
       string_agg(saga_id || '/' || step || (CASE WHEN needed THEN ':not-undone' ELSE ':undone' END), ' ') FILTER (WHERE rn <= 5),
       'a compensated saga undid each step that took effect (or may have), and no other'
FROM (SELECT s.saga_id, s.step, n.needed, row_number() OVER () AS rn
      FROM fx_steps s
      CROSS JOIN LATERAL (SELECT s.has_comp AND (s.unknown OR EXISTS (
                 SELECT 1 FROM fx_effects e WHERE e.saga_id = s.saga_id AND e.step = s.step
                   AND NOT e.is_undo AND e.outcome IN ('success', 'none'))) AS needed) n
      CROSS JOIN LATERAL (SELECT EXISTS (
                 SELECT 1 FROM fx_accepted a JOIN fx_effects e ON e.command_id = a.causation_id
                 WHERE a.saga_id = s.saga_id AND a.step = s.step AND a.is_undo
                   AND a.outcome = 'success' AND e.outcome = 'success') AS undone) u
      WHERE s.saga_status = 'compensated'
        AND (n.needed <> u.undone OR u.undone <> (s.status = 'compensated'))) x;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'no undo of a step never sent', count(*), string_agg(command_id, ' ') FILTER (WHERE rn <= 5),
       'a compensation went only to a step whose command was sent'
FROM (SELECT u.command_id, row_number() OVER () AS rn FROM fx_effects u
      WHERE u.is_undo AND NOT EXISTS (SELECT 1 FROM fx_sent c WHERE c.saga_id = u.saga_id
                                         AND c.step = u.step AND NOT c.undo)) x;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'compensations in reverse order (effects)', count(DISTINCT s.id), string_agg(DISTINCT s.id, ' '),
       'the participant received a step''s undo only after the undos of every later step succeeded'
FROM sagas s
JOIN fx_steps a ON a.saga_id = s.id
JOIN fx_steps b ON b.saga_id = s.id AND a.idx < b.idx
WHERE (SELECT min(seq) FROM fx_effects e WHERE e.saga_id = s.id AND e.step = a.step AND e.is_undo)
    < (SELECT max(seq) FROM fx_effects e WHERE e.saga_id = s.id AND e.step = b.step AND e.is_undo
         AND e.outcome = 'success');

INSERT INTO fx_out (name, n, examples, what)
SELECT 'compensations in reverse order (history)', count(DISTINCT h1.saga_id), string_agg(DISTINCT h1.saga_id, ' '),
       'the saga recorded its steps compensated latest first'
FROM saga_history h1
JOIN saga_history h2 ON h2.saga_id = h1.saga_id AND h2.event = 'step.compensated' AND h1.seq < h2.seq
JOIN fx_steps a ON a.saga_id = h1.saga_id AND a.step = h1.step
JOIN fx_steps b ON b.saga_id = h2.saga_id AND b.step = h2.step
WHERE h1.event = 'step.compensated' AND a.idx < b.idx;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'version = transitions', count(*), string_agg(id || ':' || version || '/' || inputs, ' ') FILTER (WHERE rn <= 5),
       'a saga''s version is the number of transitions committed (one input.* history entry each)'
FROM (SELECT s.id, s.version, count(i.seq) AS inputs, row_number() OVER () AS rn
      FROM sagas s LEFT JOIN fx_inputs i ON i.saga_id = s.id
      GROUP BY s.id, s.version HAVING s.version <> count(i.seq)) x;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'history complete', count(*), string_agg(id, ' ') FILTER (WHERE rn <= 5),
       'one start per saga, and the last saga.* entry is the saga''s status'
FROM (SELECT s.id, row_number() OVER () AS rn FROM sagas s
      WHERE (SELECT count(*) FROM fx_inputs i WHERE i.saga_id = s.id AND i.kind = 'start') <> 1
         OR (SELECT h.event FROM saga_history h WHERE h.saga_id = s.id AND h.event LIKE 'saga.%'
             ORDER BY h.seq DESC LIMIT 1) <> 'saga.' || s.status) x;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'injected messages dead-lettered', count(*), string_agg(m, ' ') FILTER (WHERE rn <= 3),
       'every bad message injected is stored whole in dead_letters'
FROM (SELECT m, row_number() OVER () AS rn FROM fx_dead
      WHERE m NOT IN (SELECT md5(raw) FROM dead_letters)) x;

INSERT INTO fx_out (name, n, examples, what)
SELECT 'nothing else dead-lettered', count(*), string_agg(left(reason, 60), ' | ') FILTER (WHERE rn <= 3),
       'no real message was dead-lettered'
FROM (SELECT reason, row_number() OVER () AS rn FROM dead_letters WHERE md5(raw) NOT IN (SELECT m FROM fx_dead)) x;

SELECT 'CHECK', name, n, COALESCE(examples, ''), what FROM fx_out ORDER BY ord;

SELECT 'FIGURES', format('sagas=%s completed=%s compensated=%s failed=%s commands=%s effects=%s '
       'redelivered=%s ignored_inputs=%s retried_after_timeout=%s lost=%s duplicated=%s '
       'dead_letters=%s/%s checks=%s violations=%s',
       (SELECT count(*) FROM sagas),
       (SELECT count(*) FROM sagas WHERE status = 'completed'),
       (SELECT count(*) FROM sagas WHERE status = 'compensated'),
       (SELECT count(*) FROM sagas WHERE status = 'failed'),
       (SELECT count(*) FROM fx_effects),
       (SELECT count(*) FROM fx_effects WHERE outcome = 'success'),
       (SELECT count(*) FROM fx_effects WHERE attempts > 1),
       (SELECT count(*) FROM fx_inputs WHERE ignored),
       (SELECT count(*) FROM (SELECT 1 FROM fx_effects WHERE outcome = 'success'
                              GROUP BY saga_id, step, is_undo HAVING count(*) > 1) x),
       (SELECT sum(n) FROM fx_out WHERE name IN ('all sagas started', 'no command lost', 'no reply lost')),
       (SELECT sum(n) FROM fx_out WHERE name IN ('one success applied per step', 'no effect twice')),
       (SELECT count(*) FROM dead_letters WHERE md5(raw) IN (SELECT m FROM fx_dead)),
       (SELECT count(*) FROM fx_dead),
       (SELECT count(*) FROM fx_out),
       (SELECT sum(n) FROM fx_out));
ROLLBACK;
