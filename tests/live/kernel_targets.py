"""C target for the kernel-memory live tests: opens loopback TCP connections and socketpairs at a
steady, known rate (absolute-time sleeps, so the rate does not drift with scheduling delays).

    fdleak RATE MAX PAYLOAD [netns]

Each iteration opens 4 fds: a TCP client connected to its own 127.0.0.1 listener, the accepted
server end, and an AF_UNIX socketpair; the client writes PAYLOAD bytes that nobody reads, so they
sit in the server end's receive queue (TCP memory in sockstat). ``netns`` first moves the process
into a new network namespace (root) with its loopback up. Prints ``READY <port>`` once the
listener is up, ``DONE <n>`` after MAX iterations, then sleeps until killed.
"""

FDLEAK_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

static void loopback_up(void) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("SIOCSIFFLAGS");
    close(s);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: fdleak RATE MAX PAYLOAD [netns]\n"); return 2; }
    double rate = atof(argv[1]);
    long max = atol(argv[2]);
    size_t payload = (size_t)atol(argv[3]);
    if (argc > 4 && strcmp(argv[4], "netns") == 0) {
        if (unshare(CLONE_NEWNET) < 0) die("unshare(CLONE_NEWNET)");
        loopback_up();
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 128) < 0) die("listen");
    socklen_t len = sizeof addr;
    getsockname(listener, (struct sockaddr *)&addr, &len);
    char *buf = calloc(1, payload ? payload : 1);
    printf("READY %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    struct timespec start, next;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long period_ns = (long)(1e9 / rate);
    for (long i = 0; i < max; i++) {
        long long at = (long long)start.tv_sec * 1000000000LL + start.tv_nsec + (long long)i * period_ns;
        next.tv_sec = at / 1000000000LL;
        next.tv_nsec = at % 1000000000LL;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        int client = socket(AF_INET, SOCK_STREAM, 0);
        if (client < 0 || connect(client, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        int server = accept(listener, NULL, NULL);
        if (server < 0) die("accept");
        if (payload && write(client, buf, payload) != (ssize_t)payload) die("write");
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0) die("socketpair");
    }
    printf("DONE %ld\n", max);
    fflush(stdout);
    for (;;) pause();
}
"""

FDS_PER_ITERATION = 4
