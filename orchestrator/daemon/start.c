/* sagad's start and stop. Start-up order: metrics and HTTP first (so
 * /healthz answers and /readyz says why it is not ready yet), then the
 * database (retried until it answers), the migrations, the definitions of
 * the sagas directory (stored in saga_definitions; a refused one is fatal),
 * then the transports. A broker that is down at start is not fatal: it is
 * retried by the worker and reported by /readyz.
 *
 * Fatal start-up problems are returned with a message for stderr; the
 * daemon then exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sagad.h"
#include "saga/redact.h"

/* ---- logging hook of the transports ---- */

static void transport_log(void *opaque, int level, const char *message) {
    (void)opaque;
    sg_log(level <= 3 ? SG_LOG_ERROR : level == 4 ? SG_LOG_WARN : level == 7 ? SG_LOG_DEBUG
                                                                             : SG_LOG_INFO,
           NULL, "%s", message);
}

/* ---- the database ---- */

static void on_migrated(void *opaque, int version, const char *file) {
    (void)opaque;
    sg_log_info("migration %04d applied: %s", version, file);
}

/* Connects, retrying with backoff until it works or the daemon stops. */
static sg_err_t connect_db(sagad_t *d) {
    char errstr[512], redacted[512];
    sg_redact(d->cfg->database_url, redacted, sizeof redacted);
    while (!(d->st = sg_store_new(d->cfg->database_url, errstr, sizeof errstr))) {
        sg_health_set(d, HEALTH_DB, false, errstr);
        if (!sg_daemon_db_backoff(d, errstr))
            return SG_ERR_CONN;
    }
    sg_daemon_db_ok(d);
    sg_store_set_outbox_lease(d->st, SAGAD_FRESH_LEASE_MS);
    sg_log_info("connected to the database %s", redacted);
    return SG_OK;
}

static sg_err_t migrate(sagad_t *d, char *errstr, size_t errstr_size) {
    char dir[1024];
    sg_store_migrations_dir(d->migrations_dir ? d->migrations_dir : d->cfg->migrations_dir, dir,
                            sizeof dir);
    for (;;) {
        int applied = 0;
        sg_err_t err = sg_store_migrate(d->st, dir, on_migrated, NULL, &applied);
        if (!err) {
            sg_log_info("schema up to date (%d migration(s) applied from '%s')", applied, dir);
            return SG_OK;
        }
        if (err != SG_ERR_CONN) {
            snprintf(errstr, errstr_size, "cannot migrate from '%s': %s", dir,
                     sg_store_errmsg(d->st));
            return err;
        }
        if (!sg_daemon_db_backoff(d, sg_store_errmsg(d->st)))
            return err;
    }
}

/* A channel of a transport that is not configured cannot be published to. */
static void check_channels(sagad_t *d, const sg_def_t *def) {
    for (int i = 0; i < def->nsteps; i++) {
        const sg_step_t *s = &def->steps[i];
        const sg_channel_t *chs[2] = {&s->command.channel,
                                      s->has_compensation ? &s->compensation.channel : NULL};
        for (int c = 0; c < 2; c++) {
            if (!chs[c])
                continue;
            bool kafka = chs[c]->transport == SG_TRANSPORT_KAFKA;
            if ((kafka && !d->cfg->kafka_brokers) || (!kafka && !d->cfg->amqp_url))
                sg_log_warn("definition '%s' version %d: step '%s' uses '%s' but %s is not "
                            "configured: its messages will wait in the outbox",
                            def->name, def->version, s->name, chs[c]->text,
                            kafka ? "kafka.brokers" : "amqp.url");
        }
    }
}

static sg_err_t load_definitions(sagad_t *d, char *errstr, size_t errstr_size) {
    sg_def_set_t *set = sg_def_set_new();
    sg_def_errors_t errs = {0};
    if (!set || !(d->dc = sg_defcache_new())) {
        sg_def_set_destroy(set);
        snprintf(errstr, errstr_size, "out of memory");
        return SG_ERR_NOMEM;
    }
    sg_err_t err = sg_def_set_load_dir(set, d->cfg->sagas_dir, &errs);
    if (err) {
        size_t len = (size_t)snprintf(errstr, errstr_size, "cannot load the sagas directory '%s':",
                                      d->cfg->sagas_dir);
        for (size_t i = 0; i < errs.count && len < errstr_size; i++)
            len += (size_t)snprintf(errstr + len, errstr_size - len, "\n  %s", errs.items[i]);
        sg_def_errors_release(&errs);
        sg_def_set_destroy(set);
        return err;
    }
    sg_def_errors_release(&errs);
    for (size_t i = 0; i < sg_def_set_count(set); i++) {
        const sg_def_t *def = sg_def_set_at(set, i);
        sg_log_info("definition '%s' version %d loaded from '%s' (sha256 %.12s)", def->name,
                    def->version, def->file, def->sha256);
        check_channels(d, def);
    }
    if (sg_def_set_count(set) == 0)
        sg_log_warn("no saga definition in '%s': every start will be dead-lettered",
                    d->cfg->sagas_dir);
    while ((err = sg_defcache_publish(d->dc, d->st, set, errstr, errstr_size)) == SG_ERR_CONN) {
        if (!sg_daemon_db_backoff(d, errstr))
            return err;
        set = sg_def_set_new();
        sg_def_set_load_dir(set, d->cfg->sagas_dir, &errs);
        sg_def_errors_release(&errs);
    }
    return err;
}

/* ---- transports ---- */

static sg_err_t split_inputs(sagad_t *d, char *errstr, size_t errstr_size) {
    d->kafka_topics = calloc(d->cfg->ninputs + 1, sizeof(char *));
    d->amqp_queues = calloc(d->cfg->ninputs + 1, sizeof(char *));
    if (!d->kafka_topics || !d->amqp_queues)
        return SG_ERR_NOMEM;
    for (size_t i = 0; i < d->cfg->ninputs; i++) {
        sg_channel_t ch;
        if (sg_channel_parse(d->cfg->inputs[i], &ch, errstr, errstr_size))
            return SG_ERR_INVALID;
        if (ch.transport == SG_TRANSPORT_KAFKA) {
            d->kafka_topics[d->nkafka_topics++] = strdup(ch.topic);
        } else if (ch.exchange[0]) {
            snprintf(errstr, errstr_size,
                     "input '%s': a rabbitmq input names a queue, as \"amqp:/<queue>\"",
                     d->cfg->inputs[i]);
            sg_channel_release(&ch);
            return SG_ERR_INVALID;
        } else {
            d->amqp_queues[d->namqp_queues++] = strdup(ch.routing_key);
        }
        sg_channel_release(&ch);
    }
    return SG_OK;
}

static sg_kafka_conf_t kafka_conf(sagad_t *d, sg_kv_t *props) {
    for (size_t i = 0; i < d->cfg->nkafka_properties; i++)
        props[i] = (sg_kv_t){d->cfg->kafka_properties[i].key, d->cfg->kafka_properties[i].value};
    return (sg_kafka_conf_t){.brokers = d->cfg->kafka_brokers,
                             .group_id = d->cfg->kafka_group_id,
                             .properties = props,
                             .nproperties = d->cfg->nkafka_properties,
                             .log = transport_log};
}

sg_kafka_consumer_t *sg_daemon_kafka_consumer(sagad_t *d, char *errstr, size_t errstr_size) {
    sg_kv_t *props = calloc(d->cfg->nkafka_properties + 1, sizeof *props);
    if (!props) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    sg_kafka_conf_t conf = kafka_conf(d, props);
    sg_kafka_consumer_t *kc = sg_kafka_consumer_new(
        &conf, (const char *const *)d->kafka_topics, d->nkafka_topics, errstr, errstr_size);
    free(props);
    if (kc)
        sg_log_info("kafka consumer in group '%s' subscribed to %zu topic(s)",
                    d->cfg->kafka_group_id, d->nkafka_topics);
    return kc;
}

static sg_err_t open_kafka(sagad_t *d, char *errstr, size_t errstr_size) {
    if (!d->cfg->kafka_brokers)
        return SG_OK;
    if (d->nkafka_topics && !(d->kc = sg_daemon_kafka_consumer(d, errstr, errstr_size)))
        return SG_ERR_INVALID;
    sg_kv_t *props = calloc(d->cfg->nkafka_properties + 1, sizeof *props);
    if (!props)
        return SG_ERR_NOMEM;
    sg_kafka_conf_t conf = kafka_conf(d, props);
    d->kp = sg_kafka_producer_new(&conf, sg_relay_delivery, d, errstr, errstr_size);
    free(props);
    return d->kp ? SG_OK : SG_ERR_INVALID;
}

static sg_err_t open_amqp(sagad_t *d, char *errstr, size_t errstr_size) {
    if (!d->cfg->amqp_url)
        return SG_OK;
    sg_amqp_conf_t conf = {.url = d->cfg->amqp_url,
                           .prefetch = (uint16_t)(d->cfg->amqp_prefetch > 65535
                                                      ? 65535
                                                      : d->cfg->amqp_prefetch),
                           .log = transport_log};
    if (d->namqp_queues &&
        !(d->ac = sg_amqp_consumer_new(&conf, (const char *const *)d->amqp_queues,
                                       d->namqp_queues, errstr, errstr_size)))
        return SG_ERR_INVALID;
    d->ap = sg_amqp_publisher_new(&conf, sg_relay_delivery, d, errstr, errstr_size);
    return d->ap ? SG_OK : SG_ERR_INVALID;
}

/* ---- start and stop ---- */

static void free_saga(void *saga) { sg_saga_destroy(saga); }

sg_err_t sg_daemon_start(sagad_t *d, char *errstr, size_t errstr_size) {
    pthread_mutex_init(&d->health.lock, NULL);
    d->health.kafka_ok = true;
    d->health.amqp_ok = true;
    snprintf(d->health.db_reason, sizeof d->health.db_reason, "starting");
    if (!(d->metrics = sg_metrics_new()) ||
        !(d->msgs = calloc((size_t)d->cfg->batch_max, sizeof *d->msgs)) ||
        !(d->cache = sg_cache_new(SAGAD_CACHE_SAGAS, free_saga))) {
        snprintf(errstr, errstr_size, "out of memory");
        return SG_ERR_NOMEM;
    }
    sg_metrics_set(d->metrics, SG_M_READY, 0);
    if (d->cfg->http_listen[0]) {
        d->http = sg_http_new(d->cfg->http_listen, d->metrics, sg_upkeep_ready, d, errstr,
                              errstr_size);
        if (!d->http)
            return SG_ERR_INVALID;
        sg_log_info("http listening on port %d: /metrics /healthz /readyz", sg_http_port(d->http));
    }
    d->tenv = (sg_transition_env_t){
        .engine = {.reply_to_kafka = d->cfg->kafka_brokers ? d->cfg->reply_to_kafka : NULL,
                   .reply_to_amqp = d->cfg->amqp_url ? d->cfg->reply_to_amqp : NULL},
        .events = d->cfg->events,
        .source = SAGAD_SOURCE,
    };
    sg_err_t err;
    if ((err = split_inputs(d, errstr, errstr_size)) || (err = connect_db(d)))
        return err == SG_ERR_CONN ? (snprintf(errstr, errstr_size, "stopped before start"), err)
                                  : err;
    if ((err = migrate(d, errstr, errstr_size)) || (err = load_definitions(d, errstr, errstr_size)))
        return err;
    if ((err = open_kafka(d, errstr, errstr_size)) || (err = open_amqp(d, errstr, errstr_size)))
        return err;
    sg_inputs_reconnect(d, sg_mono_ms());
    sg_relay_connect(d);
    sg_upkeep_ping(d, sg_mono_ms());
    return SG_OK;
}

void sg_daemon_stop(sagad_t *d) {
    sg_cache_destroy(d->cache);
    char errstr[256];
    if (d->kc && sg_kafka_consumer_commit(d->kc, errstr, sizeof errstr) != SG_OK)
        sg_log_debug("final offset commit: %s", errstr);
    sg_kafka_consumer_destroy(d->kc);
    sg_amqp_consumer_destroy(d->ac);
    if (d->kp && sg_kafka_producer_flush(d->kp, SAGAD_FLUSH_MS, errstr, sizeof errstr) != SG_OK)
        sg_log_warn("kafka: %s", errstr);
    sg_kafka_producer_destroy(d->kp);
    sg_amqp_publisher_destroy(d->ap);
    sg_http_destroy(d->http);
    sg_store_destroy(d->st);
    sg_store_destroy(d->st2);
    sg_defcache_destroy(d->dc);
    sg_metrics_destroy(d->metrics);
    for (size_t i = 0; i < d->nkafka_topics; i++)
        free(d->kafka_topics[i]);
    for (size_t i = 0; i < d->namqp_queues; i++)
        free(d->amqp_queues[i]);
    free(d->kafka_topics);
    free(d->amqp_queues);
    free(d->msgs);
    sg_relay_release(d);
    pthread_mutex_destroy(&d->health.lock);
}
