/* kafka-dev-broker: a Kafka cluster in one process, for tests and the local
 * stack, built on librdkafka's mock cluster (rdkafka_mock.h).
 *
 * It speaks the Kafka protocol on loopback TCP ports (one per broker), so any
 * client (sagad, kcat, librdkafka programs) connects to it as to a real
 * cluster: produce, idempotent produce, consumer groups and offset commits
 * work. Everything is kept in memory and lost on exit.
 *
 * Promises:
 * - the bootstrap address ("host:port,host:port,...") is written to
 *   --bootstrap-file (atomically, by rename) only once the cluster listens and
 *   the --topic topics exist; the file is removed on exit;
 * - topics not created with --topic are created on first use by a client that
 *   allows auto creation (producers do; librdkafka consumers do not by
 *   default), with 4 partitions (fixed by librdkafka 2.0's mock cluster);
 * - --control names a FIFO (created if missing) read line by line:
 *     down <broker|all>        refuse connections (drops current ones)
 *     up <broker|all>          accept connections again
 *     rtt <broker|all> <ms>    delay every response by ms
 *     error <api-key> <error-code> <count>
 *                              fail the next count requests of that API
 *                              (key or name, e.g. 0 or Produce) with that
 *                              error (code or name, e.g. 6 or
 *                              NOT_LEADER_FOR_PARTITION)
 *     clear <api-key>          drop pending injected errors of that API
 *     topic <name> <partitions>  create a topic
 *   Each applied line is logged to stderr as "applied: <line>"; a bad line is
 *   reported and ignored. When a writer closes the FIFO it is reopened, so
 *   any number of writers may come one after another;
 * - SIGTERM or SIGINT stops it cleanly (exit status 0).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 64
#define TOPIC_NAME_MAX 250
#define LINE_MAX_LEN 1024
#define POLL_MS 200

typedef struct {
    char name[TOPIC_NAME_MAX];
    int partitions;
} topic_opt_t;

typedef struct {
    int brokers;
    topic_opt_t topics[MAX_TOPICS];
    int topic_cnt;
    const char *bootstrap_file;
    const char *control_path;
} opts_t;

typedef struct {
    rd_kafka_mock_cluster_t *mc;
    int brokers;
    const char *path;
    int fd;
    int created_fifo;
    char buf[LINE_MAX_LEN];
    size_t len;
    int overflow;   /* discarding the rest of an over-long line */
} control_t;

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: kafka-dev-broker [--brokers N] [--topic NAME:PARTITIONS]...\n"
            "                        [--bootstrap-file PATH] [--control FIFO]\n"
            "control lines: down <broker|all>, up <broker|all>,\n"
            "  rtt <broker|all> <ms>, error <api-key> <error-code> <count>,\n"
            "  clear <api-key>, topic <name> <partitions>\n");
}

/* Parses a decimal integer in [min, max]; returns 0 on success. */
static int parse_int(const char *s, long min, long max, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_topic_opt(const char *arg, topic_opt_t *t) {
    const char *colon = strrchr(arg, ':');
    long parts;
    if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof(t->name))
        return -1;
    if (parse_int(colon + 1, 1, 10000, &parts))
        return -1;
    snprintf(t->name, sizeof(t->name), "%.*s", (int)(colon - arg), arg);
    t->partitions = (int)parts;
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o) {
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"bootstrap-file", required_argument, NULL, 'f'},
        {"control", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    long n;
    o->brokers = 1;
    while ((c = getopt_long(argc, argv, "b:t:f:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (parse_int(optarg, 1, 64, &n)) {
                fprintf(stderr, "kafka-dev-broker: bad --brokers '%s'\n", optarg);
                return -1;
            }
            o->brokers = (int)n;
            break;
        case 't':
            if (o->topic_cnt == MAX_TOPICS ||
                parse_topic_opt(optarg, &o->topics[o->topic_cnt])) {
                fprintf(stderr, "kafka-dev-broker: bad --topic '%s' "
                        "(want NAME:PARTITIONS)\n", optarg);
                return -1;
            }
            o->topic_cnt++;
            break;
        case 'f': o->bootstrap_file = optarg; break;
        case 'c': o->control_path = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

static int replication_for(int brokers) {
    return brokers < 3 ? brokers : 3;
}

/* Writes the bootstrap list to path.tmp then renames it, so a reader never
 * sees a half-written file. */
static int write_bootstrap(const char *path, const char *bootstraps) {
    char tmp[4096];
    FILE *f;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return -1;
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    if (fprintf(f, "%s\n", bootstraps) < 0) {
        fclose(f);
        unlink(tmp);
        return -1;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---- control lines ---------------------------------------------------- */

static const struct {
    const char *name;
    int key;
} api_names[] = {
    {"Produce", 0}, {"Fetch", 1}, {"ListOffsets", 2}, {"Metadata", 3},
    {"OffsetCommit", 8}, {"OffsetFetch", 9}, {"FindCoordinator", 10},
    {"JoinGroup", 11}, {"Heartbeat", 12}, {"LeaveGroup", 13},
    {"SyncGroup", 14}, {"DescribeGroups", 15}, {"ListGroups", 16},
    {"ApiVersions", 18}, {"CreateTopics", 19}, {"InitProducerId", 22},
    {"AddPartitionsToTxn", 24}, {"AddOffsetsToTxn", 25}, {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
};

static int parse_api_key(const char *s, int *key) {
    long v;
    if (parse_int(s, 0, 32767, &v) == 0) {
        *key = (int)v;
        return 0;
    }
    for (size_t i = 0; i < sizeof(api_names) / sizeof(api_names[0]); i++) {
        if (strcasecmp(s, api_names[i].name) == 0) {
            *key = api_names[i].key;
            return 0;
        }
    }
    return -1;
}

static int parse_error_code(const char *s, rd_kafka_resp_err_t *err) {
    const struct rd_kafka_err_desc *descs;
    size_t cnt;
    long v;
    if (parse_int(s, -200, 32767, &v) == 0) {
        *err = (rd_kafka_resp_err_t)v;
        return 0;
    }
    rd_kafka_get_err_descs(&descs, &cnt);
    for (size_t i = 0; i < cnt; i++) {
        if (descs[i].name && strcasecmp(s, descs[i].name) == 0) {
            *err = descs[i].code;
            return 0;
        }
    }
    return -1;
}

static int parse_broker(const control_t *ctl, const char *s, int32_t *id) {
    long v;
    if (strcmp(s, "all") == 0) {
        *id = -1;
        return 0;
    }
    if (parse_int(s, 1, ctl->brokers, &v))
        return -1;
    *id = (int32_t)v;
    return 0;
}

static int cmd_updown(control_t *ctl, int argc, char **argv, char *why, size_t why_size) {
    int32_t id;
    rd_kafka_resp_err_t err;
    if (argc != 2 || parse_broker(ctl, argv[1], &id)) {
        snprintf(why, why_size, "want: %s <broker 1..%d|all>", argv[0], ctl->brokers);
        return -1;
    }
    err = argv[0][0] == 'd' ? rd_kafka_mock_broker_set_down(ctl->mc, id)
                            : rd_kafka_mock_broker_set_up(ctl->mc, id);
    if (err) {
        snprintf(why, why_size, "%s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static int cmd_rtt(control_t *ctl, int argc, char **argv, char *why, size_t why_size) {
    int32_t id;
    long ms;
    rd_kafka_resp_err_t err;
    if (argc != 3 || parse_broker(ctl, argv[1], &id) ||
        parse_int(argv[2], 0, 3600000, &ms)) {
        snprintf(why, why_size, "want: rtt <broker 1..%d|all> <ms>", ctl->brokers);
        return -1;
    }
    err = rd_kafka_mock_broker_set_rtt(ctl->mc, id, (int)ms);
    if (err) {
        snprintf(why, why_size, "%s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static int cmd_error(control_t *ctl, int argc, char **argv, char *why, size_t why_size) {
    int key;
    long cnt;
    rd_kafka_resp_err_t code;
    rd_kafka_resp_err_t *errs;
    if (argc != 4 || parse_api_key(argv[1], &key) || parse_error_code(argv[2], &code) ||
        parse_int(argv[3], 1, 100000, &cnt)) {
        snprintf(why, why_size, "want: error <api-key> <error-code> <count>");
        return -1;
    }
    errs = calloc((size_t)cnt, sizeof(*errs));
    if (!errs) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    for (long i = 0; i < cnt; i++)
        errs[i] = code;
    rd_kafka_mock_push_request_errors_array(ctl->mc, (int16_t)key, (size_t)cnt, errs);
    free(errs);
    return 0;
}

static int cmd_clear(control_t *ctl, int argc, char **argv, char *why, size_t why_size) {
    int key;
    if (argc != 2 || parse_api_key(argv[1], &key)) {
        snprintf(why, why_size, "want: clear <api-key>");
        return -1;
    }
    rd_kafka_mock_clear_request_errors(ctl->mc, (int16_t)key);
    return 0;
}

static int cmd_topic(control_t *ctl, int argc, char **argv, char *why, size_t why_size) {
    long parts;
    rd_kafka_resp_err_t err;
    if (argc != 3 || strlen(argv[1]) >= TOPIC_NAME_MAX ||
        parse_int(argv[2], 1, 10000, &parts)) {
        snprintf(why, why_size, "want: topic <name> <partitions>");
        return -1;
    }
    err = rd_kafka_mock_topic_create(ctl->mc, argv[1], (int)parts,
                                     replication_for(ctl->brokers));
    if (err) {
        snprintf(why, why_size, "%s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

typedef int (*cmd_fn)(control_t *, int, char **, char *, size_t);

static const struct {
    const char *verb;
    cmd_fn fn;
} commands[] = {
    {"down", cmd_updown}, {"up", cmd_updown}, {"rtt", cmd_rtt},
    {"error", cmd_error}, {"clear", cmd_clear}, {"topic", cmd_topic},
};

/* Splits line in place on blanks; returns the word count (at most max). */
static int split_words(char *line, char **argv, int max) {
    int argc = 0;
    char *p = line;
    while (*p) {
        while (*p && isspace((unsigned char)*p))
            *p++ = '\0';
        if (!*p)
            break;
        if (argc == max)
            return max + 1;
        argv[argc++] = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
    }
    return argc;
}

static void control_apply(control_t *ctl, const char *line) {
    char copy[LINE_MAX_LEN];
    char *argv[6];
    char why[256] = "unknown command";
    int argc;
    snprintf(copy, sizeof(copy), "%s", line);
    argc = split_words(copy, argv, 5);
    if (argc == 0 || argv[0][0] == '#')
        return;
    if (argc > 5) {
        fprintf(stderr, "kafka-dev-broker: bad control line '%s': too many words\n", line);
        return;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[0], commands[i].verb) != 0)
            continue;
        if (commands[i].fn(ctl, argc, argv, why, sizeof(why)) == 0) {
            fprintf(stderr, "kafka-dev-broker: applied: %s\n", line);
            return;
        }
        break;
    }
    fprintf(stderr, "kafka-dev-broker: bad control line '%s': %s\n", line, why);
}

static int control_open(control_t *ctl) {
    struct stat st;
    if (stat(ctl->path, &st) != 0) {
        if (mkfifo(ctl->path, 0600) != 0) {
            fprintf(stderr, "kafka-dev-broker: cannot create fifo '%s': %s\n",
                    ctl->path, strerror(errno));
            return -1;
        }
        ctl->created_fifo = 1;
    } else if (!S_ISFIFO(st.st_mode)) {
        fprintf(stderr, "kafka-dev-broker: control path '%s' is not a fifo\n", ctl->path);
        return -1;
    }
    /* Non-blocking so that opening does not wait for a writer. */
    ctl->fd = open(ctl->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (ctl->fd < 0) {
        fprintf(stderr, "kafka-dev-broker: cannot open fifo '%s': %s\n",
                ctl->path, strerror(errno));
        return -1;
    }
    return 0;
}

static void control_feed(control_t *ctl, const char *data, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char ch = data[i];
        if (ch == '\n') {
            if (ctl->overflow)
                fprintf(stderr, "kafka-dev-broker: bad control line: longer than %d bytes\n",
                        LINE_MAX_LEN - 1);
            else {
                ctl->buf[ctl->len] = '\0';
                control_apply(ctl, ctl->buf);
            }
            ctl->len = 0;
            ctl->overflow = 0;
        } else if (ctl->len + 1 < sizeof(ctl->buf)) {
            ctl->buf[ctl->len++] = ch;
        } else {
            ctl->overflow = 1;
        }
    }
}

/* Reads what is there; at end of file (the last writer closed) applies a
 * final unterminated line and reopens the FIFO for the next writer. */
static int control_read(control_t *ctl) {
    char data[4096];
    ssize_t n = read(ctl->fd, data, sizeof(data));
    if (n > 0) {
        control_feed(ctl, data, (size_t)n);
        return 0;
    }
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (ctl->len > 0 || ctl->overflow)
        control_feed(ctl, "\n", 1);
    close(ctl->fd);
    ctl->fd = -1;
    return control_open(ctl);
}

static int run_loop(control_t *ctl) {
    while (!stopping) {
        struct pollfd p = {.fd = ctl->fd, .events = POLLIN};
        int r = poll(&p, ctl->fd >= 0 ? 1 : 0, POLL_MS);
        if (r < 0 && errno != EINTR) {
            perror("kafka-dev-broker: poll");
            return -1;
        }
        if (r > 0 && control_read(ctl) != 0)
            return -1;
    }
    return 0;
}

/* ---- cluster lifecycle -------------------------------------------------- */

static rd_kafka_t *cluster_handle_new(void) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    /* This handle only hosts the mock cluster; keep its own logs quiet. */
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-dev-broker: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "kafka-dev-broker: cannot create client: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

static int create_topics(rd_kafka_mock_cluster_t *mc, const opts_t *o) {
    for (int i = 0; i < o->topic_cnt; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            mc, o->topics[i].name, o->topics[i].partitions, replication_for(o->brokers));
        if (err) {
            fprintf(stderr, "kafka-dev-broker: cannot create topic '%s': %s\n",
                    o->topics[i].name, rd_kafka_err2str(err));
            return -1;
        }
    }
    return 0;
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv) {
    opts_t o;
    control_t ctl;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    int wrote_bootstrap = 0;
    int rc = 1;

    memset(&o, 0, sizeof(o));
    memset(&ctl, 0, sizeof(ctl));
    ctl.fd = -1;
    if (parse_opts(argc, argv, &o))
        return 2;
    install_signals();

    rk = cluster_handle_new();
    if (!rk)
        goto fail;
    mc = rd_kafka_mock_cluster_new(rk, o.brokers);
    if (!mc) {
        fprintf(stderr, "kafka-dev-broker: cannot create mock cluster\n");
        goto fail;
    }
    if (create_topics(mc, &o))
        goto fail;
    ctl.mc = mc;
    ctl.brokers = o.brokers;
    ctl.path = o.control_path;
    if (ctl.path && control_open(&ctl))
        goto fail;
    if (o.bootstrap_file) {
        if (write_bootstrap(o.bootstrap_file, rd_kafka_mock_cluster_bootstraps(mc))) {
            fprintf(stderr, "kafka-dev-broker: cannot write bootstrap file '%s': %s\n",
                    o.bootstrap_file, strerror(errno));
            goto fail;
        }
        wrote_bootstrap = 1;
    }
    printf("kafka-dev-broker: %d broker(s) listening on %s\n", o.brokers,
           rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    if (run_loop(&ctl) == 0)
        rc = 0;
    fprintf(stderr, "kafka-dev-broker: stopping\n");

fail:
    if (wrote_bootstrap)
        unlink(o.bootstrap_file);
    if (ctl.fd >= 0)
        close(ctl.fd);
    if (ctl.created_fifo)
        unlink(ctl.path);
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}
