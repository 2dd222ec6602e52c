/*
 * The delivery benchmark's WebSocket clients in C: the same work as bench/wsclients.py's Python
 * engine (connect, RFC 6455 handshake, unmasked server frames, each text frame's "seq" and kernel
 * arrival stamp, the first copy of each seq's body, masked pongs), in a fraction of its CPU.
 *
 * Why: the client processes share the box's two cores with the servers they measure. The Python
 * engine takes 9-15 us of CPU per frame (0.5-0.9 of the two cores at 10,000 sockets), about as much
 * as the server under test; phones do not run on the server's cores. Loaded from Python with ctypes
 * (bench/native.py compiles it); the analysis (POST matching, percentiles) stays in Python.
 *
 * One set of sockets per process (global state): the orchestrator runs one set per client process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_TIMESTAMPNS
#define SO_TIMESTAMPNS 35
#endif

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

typedef struct {
    int fd;
    int state;
    int ready;      /* counted as connected (opened, and the first frame when waited for) */
    int failed;     /* gave up during the connect phase */
    int upgraded;
    int got_first;
    int first_wait; /* open: the deadline now runs for the first frame */
    double deadline; /* connect phase: give up after this (monotonic s) */
    unsigned char *buf; /* bytes of an incomplete frame (or the handshake) */
    size_t len, cap;
    int64_t *seqs;
    double *arrivals;
    size_t n, capn, capa;
} wsock;

typedef struct {
    int64_t seq;
    int used;
    unsigned char *data;
    size_t len;
} body;

static wsock *socks;
static int nsocks;
static int ep = -1;
static int recording;
static long closed_count, user_clock;
static double *lag;
static size_t nlag, caplag;
static body *bodies;
static size_t bcap, bcount;
static unsigned char *rbuf;
static size_t read_size = 65536;
static char request[2048];
static size_t request_len;
static char stdin_buf[65536];
static size_t stdin_len;
static int stdin_eof, stdin_watched, stdin_plain;
static long polls, ready_events;
static int batch_us;

#define STDIN_TAG UINT64_MAX

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double epoch_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void *grow(void *p, size_t *cap, size_t need, size_t item) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(p, c * item);
    if (!q) {
        perror("wsclient_native: realloc");
        abort();
    }
    *cap = c;
    return q;
}

static void lag_add(double v) {
    lag = grow(lag, &caplag, nlag + 1, sizeof *lag);
    lag[nlag++] = v;
}

/* bodies: open addressing on seq, first copy kept */
static void body_keep(int64_t seq, const unsigned char *data, size_t len) {
    if ((bcount + 1) * 2 > bcap) {
        size_t ncap = bcap ? bcap * 2 : 1024;
        body *nb = calloc(ncap, sizeof *nb);
        if (!nb) abort();
        for (size_t i = 0; i < bcap; i++) {
            if (!bodies[i].used) continue;
            size_t h = (uint64_t)bodies[i].seq * 11400714819323198485ull % ncap;
            while (nb[h].used) h = (h + 1) % ncap;
            nb[h] = bodies[i];
        }
        free(bodies);
        bodies = nb;
        bcap = ncap;
    }
    size_t h = (uint64_t)seq * 11400714819323198485ull % bcap;
    while (bodies[h].used) {
        if (bodies[h].seq == seq) return;
        h = (h + 1) % bcap;
    }
    bodies[h].used = 1;
    bodies[h].seq = seq;
    bodies[h].data = malloc(len ? len : 1);
    if (!bodies[h].data) abort();
    memcpy(bodies[h].data, data, len);
    bodies[h].len = len;
    bcount++;
}

static void sock_close(wsock *s) {
    if (s->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
    }
    s->state = ST_CLOSED;
}

static void sock_lost(wsock *s) {
    if (s->ready) closed_count++;
    else s->failed = 1;
    sock_close(s);
}

/* The digits after `key` in [start, stop), like bench/wsclients.py's number_after. */
static int number_after(const unsigned char *b, size_t start, size_t stop, const char *key, int64_t *out) {
    size_t klen = strlen(key);
    if (stop < start + klen) return 0;
    const unsigned char *hit = memmem(b + start, stop - start, key, klen);
    if (!hit) return 0;
    size_t i = (size_t)(hit - b) + klen;
    int neg = 0, any = 0;
    int64_t v = 0;
    while (i < stop && b[i] == ' ') i++;
    if (i < stop && b[i] == '-') {
        neg = 1;
        i++;
    }
    while (i < stop && b[i] >= '0' && b[i] <= '9') {
        v = v * 10 + (b[i] - '0');
        i++;
        any = 1;
    }
    if (!any) return 0;
    *out = neg ? -v : v;
    return 1;
}

static void frame_text(wsock *s, const unsigned char *b, size_t start, size_t stop, double arrival) {
    s->got_first = 1;
    int64_t seq;
    size_t head = stop < start + 64 ? stop : start + 64;
    if (!number_after(b, start, head, "\"seq\":", &seq)) return;
    s->seqs = grow(s->seqs, &s->capn, s->n + 1, sizeof *s->seqs);
    s->arrivals = grow(s->arrivals, &s->capa, s->n + 1, sizeof *s->arrivals);
    s->seqs[s->n] = seq;
    s->arrivals[s->n] = arrival;
    s->n++;
    body_keep(seq, b + start, stop - start);
}

/* Parse what is in b[0:size); returns how many bytes were consumed (0 when the socket was lost). */
static size_t parse(wsock *s, const unsigned char *b, size_t size, double arrival, int *lost) {
    size_t pos = 0;
    if (!s->upgraded) {
        const unsigned char *end = memmem(b, size, "\r\n\r\n", 4);
        if (!end) return 0;
        if (size < 12 || memcmp(b, "HTTP/1.1 101", 12) != 0) {
            *lost = 1;
            return 0;
        }
        s->upgraded = 1;
        s->state = ST_OPEN;
        pos = (size_t)(end - b) + 4;
    }
    while (size - pos >= 2) {
        unsigned b0 = b[pos];
        uint64_t length = b[pos + 1] & 0x7F;
        size_t head = 2;
        if (length == 126) {
            if (size - pos < 4) break;
            length = ((uint64_t)b[pos + 2] << 8) | b[pos + 3];
            head = 4;
        } else if (length == 127) {
            if (size - pos < 10) break;
            length = 0;
            for (int i = 0; i < 8; i++) length = (length << 8) | b[pos + 2 + i];
            head = 10;
        }
        if (size - pos < head + length) break;
        size_t start = pos + head, stop = pos + head + (size_t)length;
        unsigned opcode = b0 & 0x0F;
        if (opcode == 0x1) {
            frame_text(s, b, start, stop, arrival);
        } else if (opcode == 0x9 && length < 126) { /* ping -> masked pong (zero mask key) */
            unsigned char pong[6 + 125];
            pong[0] = 0x8A;
            pong[1] = 0x80 | (unsigned char)length;
            memset(pong + 2, 0, 4);
            memcpy(pong + 6, b + start, (size_t)length);
            ssize_t w = send(s->fd, pong, 6 + (size_t)length, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
        }
        pos = stop;
    }
    return pos;
}

static void received(wsock *s, const unsigned char *data, size_t size, double arrival) {
    int lost = 0;
    if (s->len == 0) {
        size_t used = parse(s, data, size, arrival, &lost);
        if (lost) {
            sock_lost(s);
            return;
        }
        if (used < size) {
            s->buf = grow(s->buf, &s->cap, size - used, 1);
            memcpy(s->buf, data + used, size - used);
            s->len = size - used;
        }
        return;
    }
    s->buf = grow(s->buf, &s->cap, s->len + size, 1);
    memcpy(s->buf + s->len, data, size);
    s->len += size;
    size_t used = parse(s, s->buf, s->len, arrival, &lost);
    if (lost) {
        sock_lost(s);
        return;
    }
    if (used) {
        memmove(s->buf, s->buf + used, s->len - used);
        s->len -= used;
    }
}

static void readable(wsock *s) {
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {rbuf, read_size};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t got = recvmsg(s->fd, &msg, MSG_DONTWAIT);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        sock_lost(s);
        return;
    }
    if (got == 0) {
        sock_lost(s);
        return;
    }
    double stamp = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            stamp = ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
        }
    }
    if (stamp < 0) {
        user_clock++;
        stamp = epoch_ms();
    } else if (recording) {
        lag_add(epoch_ms() - stamp);
    }
    received(s, rbuf, (size_t)got, stamp);
}

static int resolve(const char *target, struct sockaddr_storage *addr, socklen_t *alen) {
    memset(addr, 0, sizeof *addr);
    if (strncmp(target, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)addr;
        un->sun_family = AF_UNIX;
        strncpy(un->sun_path, target + 5, sizeof un->sun_path - 1);
        *alen = sizeof *un;
        return 0;
    }
    char host[256];
    const char *colon = strrchr(target, ':');
    if (!colon || (size_t)(colon - target) >= sizeof host) return -1;
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = 0;
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) return -1;
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *alen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int start_connect(wsock *s, const struct sockaddr_storage *addr, socklen_t alen, uint64_t tag, double timeout) {
    int unix_socket = addr->ss_family == AF_UNIX;
    s->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) return -1;
    int one = 1;
    if (!unix_socket) setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    if (connect(s->fd, (const struct sockaddr *)addr, alen) < 0 && errno != EINPROGRESS) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u64 = tag};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    s->state = ST_CONNECTING;
    s->deadline = monotonic_s() + timeout;
    return 0;
}

static void connected(wsock *s, uint64_t tag) {
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
        sock_lost(s);
        return;
    }
    /* a few hundred bytes into an empty send buffer */
    if (send(s->fd, request, request_len, MSG_NOSIGNAL) != (ssize_t)request_len) {
        sock_lost(s);
        return;
    }
    s->state = ST_HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static void handle(uint64_t tag, uint32_t events) {
    wsock *s = &socks[tag];
    if (s->fd < 0) return;
    if (s->state == ST_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) connected(s, tag);
        return;
    }
    readable(s);
}

static void stdin_read(void) {
    if (stdin_len >= sizeof stdin_buf) stdin_len = 0; /* a line this long is no command */
    ssize_t got = read(0, stdin_buf + stdin_len, sizeof stdin_buf - stdin_len);
    if (got > 0) {
        stdin_len += (size_t)got;
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        stdin_eof = 1;
        if (stdin_watched) epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
        stdin_watched = 0;
    }
}

/* A complete line off stdin into out (without its newline); 1 if there was one (or stdin ended). */
static int take_line(char *out, size_t cap) {
    char *nl = memchr(stdin_buf, '\n', stdin_len);
    if (!nl && !stdin_eof) return 0;
    size_t n = nl ? (size_t)(nl - stdin_buf) : stdin_len;
    size_t copy = n < cap - 1 ? n : cap - 1;
    memcpy(out, stdin_buf, copy);
    out[copy] = 0;
    size_t rest = nl ? stdin_len - n - 1 : 0;
    memmove(stdin_buf, stdin_buf + stdin_len - rest, rest);
    stdin_len = rest;
    return 1;
}

/* ---------------------------------------------------------------- the API bench/native.py calls */

/*
 * Open `count` sockets, round-robin over the newline-separated `targets` ("host:port" or
 * "unix:PATH"), `concurrency` at a time, each sending the upgrade request for `path` with the Host
 * `host`. Waits until each is open (and, with wait_first, has had a text frame), or gave up after
 * `timeout` seconds. Returns how many are ready; -1 if nothing could be set up.
 *
 * batch_micros: after each poll that found fewer than 1,024 sockets ready, wait that long before
 * the next, so that a poll serves many sockets (the arrival is the kernel's stamp, so reading a
 * millisecond later changes no figure; at 5,000 sockets and 10 frames/s, 1,000 us took the
 * client's CPU per frame from 7.9 to 4.7 us, most of the rest being the kernel's recvmsg and the
 * ACK it sends).
 */
int wsc_open(const char *targets, const char *host, const char *path, int count, int wait_first, double timeout,
             int concurrency, int read_bytes, int batch_micros) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (read_bytes > 0) read_size = (size_t)read_bytes;
    batch_us = batch_micros;
    rbuf = malloc(read_size);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!rbuf || ep < 0) return -1;
    /* One Sec-WebSocket-Key for all: the server only echoes its hash (the Python engine draws one per
       socket; nothing is checked against it either way). */
    unsigned char raw[16];
    char key[25];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, raw, sizeof raw) != (ssize_t)sizeof raw) return -1;
    close(fd);
    for (int i = 0, j = 0; i < 15; i += 3) {
        uint32_t v = ((uint32_t)raw[i] << 16) | ((uint32_t)raw[i + 1] << 8) | raw[i + 2];
        key[j++] = b64[(v >> 18) & 63];
        key[j++] = b64[(v >> 12) & 63];
        key[j++] = b64[(v >> 6) & 63];
        key[j++] = b64[v & 63];
    }
    key[20] = b64[raw[15] >> 2];
    key[21] = b64[(raw[15] & 3) << 4];
    key[22] = key[23] = '=';
    key[24] = 0;
    int w = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: http://%s\r\n\r\n",
                     path, host, key, host);
    if (w <= 0 || (size_t)w >= sizeof request) return -1;
    request_len = (size_t)w;

    int ntargets = 0;
    struct sockaddr_storage addrs[64];
    socklen_t alens[64];
    char *copy = strdup(targets), *save = NULL;
    for (char *t = strtok_r(copy, "\n", &save); t && ntargets < 64; t = strtok_r(NULL, "\n", &save)) {
        if (resolve(t, &addrs[ntargets], &alens[ntargets]) == 0) ntargets++;
    }
    free(copy);
    if (!ntargets) return -1;

    socks = calloc((size_t)count, sizeof *socks);
    if (!socks) return -1;
    nsocks = count;
    for (int i = 0; i < count; i++) socks[i].fd = -1;
    int next = 0, inflight = 0, waiting = 0, ready = 0;
    struct epoll_event events[1024];
    while (next < count || inflight || waiting) {
        while (next < count && inflight < concurrency) {
            wsock *s = &socks[next];
            if (start_connect(s, &addrs[next % ntargets], alens[next % ntargets], (uint64_t)next, timeout) == 0)
                inflight++;
            else
                s->failed = 1;
            next++;
        }
        int got = epoll_wait(ep, events, 1024, 100);
        for (int e = 0; e < got; e++) handle(events[e].data.u64, events[e].events);
        /* Settle: who is open (then waits for its first frame, outside the connect gate), who gave up. */
        double now = monotonic_s();
        inflight = waiting = 0;
        for (int i = 0; i < next; i++) {
            wsock *s = &socks[i];
            if (s->ready || s->failed) continue;
            if (s->state == ST_CLOSED) {
                s->failed = 1;
                continue;
            }
            int opened = s->upgraded;
            if (opened && (!wait_first || s->got_first)) {
                s->ready = 1;
                ready++;
                continue;
            }
            if (opened && !s->first_wait) { /* as the Python engine: a fresh timeout for the first frame */
                s->first_wait = 1;
                s->deadline = now + timeout;
            }
            if (now > s->deadline) {
                s->failed = 1;
                if (!opened) sock_close(s); /* open but without a first frame: kept open, not counted */
                continue;
            }
            if (opened)
                waiting++;
            else
                inflight++;
        }
    }
    return ready;
}

/*
 * Read the sockets for `seconds` (< 0: without limit) or, with until_line, until a line comes on
 * stdin (copied to `line`). Returns 1 when a line was taken, 0 when the time ran out.
 */
int wsc_run(double seconds, int until_line, char *line, int cap) {
    if (!stdin_watched && !stdin_eof && !stdin_plain) {
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) == 0)
            stdin_watched = 1;
        else
            stdin_plain = 1; /* a regular file (or /dev/null): always readable */
    }
    double until = seconds >= 0 ? monotonic_s() + seconds : 0;
    struct epoll_event events[1024];
    for (;;) {
        if (until_line) {
            if (stdin_plain && !stdin_eof) stdin_read();
            if (take_line(line, (size_t)cap)) return 1;
        }
        int wait_ms = -1;
        if (seconds >= 0) {
            double left = until - monotonic_s();
            if (left <= 0) return 0;
            wait_ms = (int)(left * 1000) + 1;
        }
        int got = epoll_wait(ep, events, 1024, wait_ms);
        polls++;
        ready_events += got > 0 ? got : 0;
        for (int e = 0; e < got; e++) {
            if (events[e].data.u64 == STDIN_TAG)
                stdin_read();
            else
                handle(events[e].data.u64, events[e].events);
        }
        if (batch_us > 0 && got < 1024) {
            struct timespec pause = {0, batch_us * 1000L};
            nanosleep(&pause, NULL);
        }
    }
}

void wsc_recording(int on) { recording = on; }

/* Forget the frames recorded so far (those before "go" are not deliveries). */
void wsc_clear(void) {
    for (int i = 0; i < nsocks; i++) socks[i].n = 0;
}

void wsc_close_all(void) {
    for (int i = 0; i < nsocks; i++)
        if (socks[i].fd >= 0) sock_close(&socks[i]);
}

long wsc_closed(void) { return closed_count; }
long wsc_polls(void) { return polls; }
long wsc_ready_events(void) { return ready_events; }
long wsc_user_clock(void) { return user_clock; }
int wsc_count(void) { return nsocks; }

long wsc_lag(double **out) {
    *out = lag;
    return (long)nlag;
}

/* Socket i's recorded frames: seqs and arrivals (epoch ms), and whether it ever upgraded. */
long wsc_frames(int i, int64_t **seqs, double **arrivals, int *upgraded) {
    *seqs = socks[i].seqs;
    *arrivals = socks[i].arrivals;
    *upgraded = socks[i].upgraded;
    return (long)socks[i].n;
}

long wsc_body_slots(void) { return (long)bcap; }

/* Slot i of the body table: 1 and its seq, bytes and length if used, else 0. */
int wsc_body(long i, int64_t *seq, unsigned char **data, size_t *len) {
    if (!bodies[i].used) return 0;
    *seq = bodies[i].seq;
    *data = bodies[i].data;
    *len = bodies[i].len;
    return 1;
}
