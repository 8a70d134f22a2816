/* tcp-cut-proxy: a TCP proxy on loopback for fault tests, put between a
 * client (sagad) and a server (PostgreSQL) to break their connections on
 * command.
 *
 *   tcp-cut-proxy --target HOST:PORT [--listen PORT] [--port-file FILE]
 *                 [--control FIFO] [--stats FILE]
 *
 * Promises:
 * - it listens on 127.0.0.1 (port 0 by default: any free port, written to
 *   --port-file atomically once it listens) and relays bytes both ways,
 *   unchanged and in order, between each accepted client and a new
 *   connection to the target;
 * - "cut" (control line, or SIGUSR1) closes every relayed connection at
 *   once, both sides;
 * - "commit N" (or SIGUSR2 for N = 1) arms N commit cuts: the next client
 *   chunk that contains "COMMIT" (also split over two reads) is forwarded
 *   whole to the server, then the server side is half-closed (so the server
 *   still reads and runs the COMMIT) and drained without relaying, and the
 *   client side is closed: the transaction commits, but the client never
 *   learns it;
 * - "disarm" drops pending commit cuts;
 * - memory is bounded: a fixed number of connections, a fixed buffer per
 *   direction; a side is read only while the other side's buffer has room;
 * - --stats FILE is rewritten (atomically) after every change with one line
 *   "accepted=A open=O cuts=C commit_cuts=K armed=R";
 * - SIGTERM or SIGINT closes everything and exits 0.
 * Control lines come from a FIFO (created if missing) that any number of
 * writers may open one after another. Each applied line is logged. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 128
#define BUF_SIZE 65536
#define LINE_MAX_LEN 256
#define DRAIN_MS 10000
#define MARK "COMMIT"
#define MARK_LEN 6

typedef struct buf {
    char data[BUF_SIZE];
    size_t off, len;
} buf_t;

/* One relayed connection. c2s: client to server bytes not yet written. */
typedef struct conn {
    bool used;
    int client, server;
    bool connecting;       /* server connect in progress */
    bool client_eof, server_eof;
    bool draining;         /* cut after COMMIT: only the server side is left */
    long long drain_until; /* monotonic ms */
    char tail[MARK_LEN];   /* last client bytes, for a mark split over reads */
    size_t tail_len;
    bool cut_pending;      /* a COMMIT is in c2s: cut once it is written */
    buf_t c2s, s2c;
} conn_t;

typedef struct proxy {
    int listen_fd;
    struct sockaddr_storage target;
    socklen_t target_len;
    const char *control_path;
    int control_fd;
    bool created_fifo;
    char line[LINE_MAX_LEN];
    size_t line_len;
    const char *stats_path;
    conn_t conns[MAX_CONNS];
    long accepted, cuts, commit_cuts, armed;
} proxy_t;

static volatile sig_atomic_t stopping, sig_cut, sig_arm;

static void on_stop(int sig) {
    (void)sig;
    stopping = 1;
}
static void on_usr1(int sig) {
    (void)sig;
    sig_cut = 1;
}
static void on_usr2(int sig) {
    (void)sig;
    sig_arm++;
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *fmt, const char *arg) {
    fprintf(stderr, "tcp-cut-proxy: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
}

static void usage(FILE *to) {
    fprintf(to, "usage: tcp-cut-proxy --target HOST:PORT [--listen PORT] [--port-file FILE]\n"
                "                     [--control FIFO] [--stats FILE]\n"
                "control lines: cut | commit N | disarm   (SIGUSR1: cut, SIGUSR2: commit 1)\n");
}

/* ---- small helpers ---- */

static int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int write_file_atomic(const char *path, const char *text) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    return ok && rename(tmp, path) == 0 ? 0 : -1;
}

static int open_conns(const proxy_t *p) {
    int n = 0;
    for (int i = 0; i < MAX_CONNS; i++)
        n += p->conns[i].used;
    return n;
}

static void write_stats(const proxy_t *p) {
    if (!p->stats_path)
        return;
    char text[256];
    snprintf(text, sizeof text, "accepted=%ld open=%d cuts=%ld commit_cuts=%ld armed=%ld\n",
             p->accepted, open_conns(p), p->cuts, p->commit_cuts, p->armed);
    if (write_file_atomic(p->stats_path, text) != 0)
        say("cannot write stats file '%s'", p->stats_path);
}

static int resolve(const char *hostport, struct sockaddr_storage *ss, socklen_t *len) {
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof host)
        return -1;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* ---- connections ---- */

static void conn_close(proxy_t *p, conn_t *c) {
    if (c->client >= 0)
        close(c->client);
    if (c->server >= 0)
        close(c->server);
    memset(c, 0, sizeof *c);
    c->client = c->server = -1;
    write_stats(p);
}

/* Closes the client now; the server keeps reading what it was sent (the
 * COMMIT included) and gets an end of stream after it. */
static void conn_cut_after_commit(proxy_t *p, conn_t *c) {
    close(c->client);
    c->client = -1;
    shutdown(c->server, SHUT_WR);
    c->draining = true;
    c->drain_until = mono_ms() + DRAIN_MS;
    c->c2s.off = c->c2s.len = 0;
    c->s2c.off = c->s2c.len = 0;
    p->commit_cuts++;
    fprintf(stderr, "tcp-cut-proxy: cut a connection right after a COMMIT (%ld so far)\n",
            p->commit_cuts);
    write_stats(p);
}

static void cut_all(proxy_t *p) {
    int n = 0;
    for (int i = 0; i < MAX_CONNS; i++) {
        conn_t *c = &p->conns[i];
        if (!c->used)
            continue;
        /* RST on both sides: an abrupt loss, as a network failure */
        struct linger lg = {1, 0};
        if (c->client >= 0)
            setsockopt(c->client, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        if (c->server >= 0)
            setsockopt(c->server, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        conn_close(p, c);
        n++;
    }
    p->cuts++;
    fprintf(stderr, "tcp-cut-proxy: cut %d connection(s)\n", n);
    write_stats(p);
}

static void accept_one(proxy_t *p) {
    int fd = accept(p->listen_fd, NULL, NULL);
    if (fd < 0)
        return;
    conn_t *c = NULL;
    for (int i = 0; i < MAX_CONNS && !c; i++)
        if (!p->conns[i].used)
            c = &p->conns[i];
    int s = -1;
    if (!c || set_nonblock(fd) != 0 ||
        (s = socket(p->target.ss_family, SOCK_STREAM, 0)) < 0 || set_nonblock(s) != 0) {
        say("%s", c ? "cannot open a connection to the target" : "too many connections");
        if (s >= 0)
            close(s);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(c, 0, sizeof *c);
    c->used = true;
    c->client = fd;
    c->server = s;
    if (connect(s, (struct sockaddr *)&p->target, p->target_len) != 0) {
        if (errno != EINPROGRESS) {
            conn_close(p, c);
            return;
        }
        c->connecting = true;
    }
    p->accepted++;
    write_stats(p);
}

/* True when MARK occurs in the client's bytes, also split between this
 * read and the previous ones; keeps the last bytes for the next call. */
static bool has_mark(conn_t *c, const char *data, size_t n) {
    char joined[MARK_LEN * 2];
    size_t head = n < MARK_LEN ? n : MARK_LEN;
    memcpy(joined, c->tail, c->tail_len);
    memcpy(joined + c->tail_len, data, head);
    size_t joined_len = c->tail_len + head;
    bool found = memmem(joined, joined_len, MARK, MARK_LEN) != NULL ||
                 memmem(data, n, MARK, MARK_LEN) != NULL;
    if (n >= MARK_LEN - 1) {
        memcpy(c->tail, data + n - (MARK_LEN - 1), MARK_LEN - 1);
        c->tail_len = MARK_LEN - 1;
    } else { /* joined holds all of tail + data here */
        size_t keep = joined_len < MARK_LEN - 1 ? joined_len : MARK_LEN - 1;
        memmove(c->tail, joined + joined_len - keep, keep);
        c->tail_len = keep;
    }
    return found;
}

/* Reads from fd into b; returns false on end of stream or error. */
static bool fill(int fd, buf_t *b, size_t *got) {
    *got = 0;
    if (b->off + b->len == BUF_SIZE && b->off > 0) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    size_t room = BUF_SIZE - b->off - b->len;
    if (room == 0)
        return true;
    ssize_t n = read(fd, b->data + b->off + b->len, room);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR;
    if (n == 0)
        return false;
    b->len += (size_t)n;
    *got = (size_t)n;
    return true;
}

/* Writes what b holds to fd; returns false on error. */
static bool flush(int fd, buf_t *b) {
    while (b->len > 0) {
        ssize_t n = write(fd, b->data + b->off, b->len);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        b->off += (size_t)n;
        b->len -= (size_t)n;
    }
    b->off = 0;
    return true;
}

static void on_client_readable(proxy_t *p, conn_t *c) {
    size_t got;
    if (!fill(c->client, &c->c2s, &got)) {
        c->client_eof = true;
        return;
    }
    if (got && has_mark(c, c->c2s.data + c->c2s.off + c->c2s.len - got, got) && p->armed > 0) {
        p->armed--;
        c->cut_pending = true;
    }
}

static void conn_step(proxy_t *p, conn_t *c, short cev, short sev) {
    if (c->draining) {
        char sink[4096];
        ssize_t n = 1;
        if (sev & (POLLIN | POLLHUP | POLLERR))
            n = read(c->server, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_close(p, c);
        else if (mono_ms() > c->drain_until)
            conn_close(p, c);
        return;
    }
    if (c->connecting && (sev & (POLLOUT | POLLERR | POLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->server, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_close(p, c);
            return;
        }
        c->connecting = false;
    }
    if (c->connecting)
        return;
    size_t got;
    if ((cev & (POLLIN | POLLHUP | POLLERR)) && !c->cut_pending)
        on_client_readable(p, c);
    if ((sev & (POLLIN | POLLHUP | POLLERR)) && !fill(c->server, &c->s2c, &got))
        c->server_eof = true;
    if (!flush(c->server, &c->c2s) || !flush(c->client, &c->s2c)) {
        conn_close(p, c);
        return;
    }
    if (c->cut_pending && c->c2s.len == 0) {
        conn_cut_after_commit(p, c);
        return;
    }
    if ((c->client_eof && c->c2s.len == 0) || (c->server_eof && c->s2c.len == 0))
        conn_close(p, c);
}

/* ---- control ---- */

static int control_open(proxy_t *p) {
    struct stat st;
    if (stat(p->control_path, &st) != 0) {
        if (mkfifo(p->control_path, 0600) != 0) {
            say("cannot create fifo '%s'", p->control_path);
            return -1;
        }
        p->created_fifo = true;
    } else if (!S_ISFIFO(st.st_mode)) {
        say("control path '%s' is not a fifo", p->control_path);
        return -1;
    }
    /* read-write: the FIFO never reports end of stream between writers */
    p->control_fd = open(p->control_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (p->control_fd < 0) {
        say("cannot open fifo '%s'", p->control_path);
        return -1;
    }
    return 0;
}

static void control_apply(proxy_t *p, const char *line) {
    char word[32];
    long n = 0;
    int k = sscanf(line, "%31s %ld", word, &n);
    if (k < 1)
        return;
    if (!strcmp(word, "cut")) {
        cut_all(p);
    } else if (!strcmp(word, "commit") && k == 2 && n > 0 && n <= 1000000) {
        p->armed += n;
        write_stats(p);
    } else if (!strcmp(word, "disarm")) {
        p->armed = 0;
        write_stats(p);
    } else {
        say("bad control line '%s'", line);
        return;
    }
    say("applied: %s", line);
}

static void control_read(proxy_t *p) {
    char data[512];
    ssize_t n;
    while ((n = read(p->control_fd, data, sizeof data)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (data[i] == '\n') {
                p->line[p->line_len] = '\0';
                control_apply(p, p->line);
                p->line_len = 0;
            } else if (p->line_len + 1 < LINE_MAX_LEN) {
                p->line[p->line_len++] = data[i];
            }
        }
    }
}

/* ---- main loop ---- */

static void handle_signals(proxy_t *p) {
    if (sig_cut) {
        sig_cut = 0;
        cut_all(p);
    }
    if (sig_arm) {
        p->armed += sig_arm;
        sig_arm = 0;
        write_stats(p);
    }
}

static short client_events(const conn_t *c) {
    short ev = 0;
    if (c->client < 0)
        return 0;
    if (!c->client_eof && !c->cut_pending && c->c2s.off + c->c2s.len < BUF_SIZE)
        ev |= POLLIN;
    if (c->s2c.len)
        ev |= POLLOUT;
    return ev;
}

static short server_events(const conn_t *c) {
    if (c->draining)
        return POLLIN;
    if (c->connecting)
        return POLLOUT;
    short ev = 0;
    if (!c->server_eof && c->s2c.off + c->s2c.len < BUF_SIZE)
        ev |= POLLIN;
    if (c->c2s.len)
        ev |= POLLOUT;
    return ev;
}

static void run(proxy_t *p) {
    struct pollfd fds[2 + 2 * MAX_CONNS];
    int slot[2 * MAX_CONNS];
    while (!stopping) {
        handle_signals(p);
        int n = 0;
        fds[n++] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = p->control_fd, .events = POLLIN};
        int first = n;
        for (int i = 0; i < MAX_CONNS; i++) {
            conn_t *c = &p->conns[i];
            if (!c->used)
                continue;
            slot[n - first] = i;
            fds[n++] = (struct pollfd){.fd = c->client, .events = client_events(c)};
            slot[n - first] = i;
            fds[n++] = (struct pollfd){.fd = c->server, .events = server_events(c)};
        }
        if (poll(fds, (nfds_t)n, 200) < 0) {
            if (errno == EINTR)
                continue;
            say("%s", "poll failed");
            return;
        }
        for (int k = first; k < n; k += 2) {
            conn_t *c = &p->conns[slot[k - first]];
            if (c->used && c->server == fds[k + 1].fd)
                conn_step(p, c, fds[k].revents, fds[k + 1].revents);
        }
        if (fds[1].fd >= 0 && (fds[1].revents & POLLIN))
            control_read(p);
        if (fds[0].revents & POLLIN)
            accept_one(p);
    }
}

static int listen_on(proxy_t *p, int port, const char *port_file) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->listen_fd < 0 ||
        setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(p->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(p->listen_fd, 64) != 0 || set_nonblock(p->listen_fd) != 0) {
        say("cannot listen on 127.0.0.1: %s", strerror(errno));
        return -1;
    }
    socklen_t len = sizeof sa;
    getsockname(p->listen_fd, (struct sockaddr *)&sa, &len);
    char text[32];
    snprintf(text, sizeof text, "%d\n", ntohs(sa.sin_port));
    if (port_file && write_file_atomic(port_file, text) != 0) {
        say("cannot write port file '%s'", port_file);
        return -1;
    }
    fprintf(stderr, "tcp-cut-proxy: listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    return 0;
}

static void on_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv) {
    static proxy_t p;
    const char *target = NULL, *port_file = NULL;
    int port = 0;
    static const struct option longopts[] = {
        {"target", required_argument, NULL, 't'}, {"listen", required_argument, NULL, 'l'},
        {"port-file", required_argument, NULL, 'p'}, {"control", required_argument, NULL, 'c'},
        {"stats", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (o) {
        case 't': target = optarg; break;
        case 'l': port = atoi(optarg); break;
        case 'p': port_file = optarg; break;
        case 'c': p.control_path = optarg; break;
        case 's': p.stats_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!target || optind != argc || port < 0 || port > 65535) {
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < MAX_CONNS; i++)
        p.conns[i].client = p.conns[i].server = -1;
    p.control_fd = -1;
    on_signals();
    if (resolve(target, &p.target, &p.target_len) != 0) {
        say("cannot resolve target '%s'", target);
        return 1;
    }
    if ((p.control_path && control_open(&p) != 0) || listen_on(&p, port, port_file) != 0)
        return 1;
    write_stats(&p);
    run(&p);
    for (int i = 0; i < MAX_CONNS; i++)
        if (p.conns[i].used)
            conn_close(&p, &p.conns[i]);
    close(p.listen_fd);
    if (p.control_fd >= 0)
        close(p.control_fd);
    if (p.created_fifo)
        unlink(p.control_path);
    if (port_file)
        unlink(port_file);
    fprintf(stderr, "tcp-cut-proxy: stopped\n");
    return 0;
}
