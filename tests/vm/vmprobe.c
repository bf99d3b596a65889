/* vmprobe: measuring and load-shaping helper for oomguard's VM scenarios (runs in the guest).
 *
 *   vmprobe now                          monotonic milliseconds
 *   vmprobe heartbeat FILE               wake every 10 ms; keep the worst stall (ms late) in FILE,
 *                                        the CLOCK_MONOTONIC ms when it ended in FILE.at, every
 *                                        stall of 1 ms or more as "END_MS LATE_MS" in FILE.log
 *   vmprobe watch FILE RECOVER_KB PID... sample every 5 ms until SIGTERM: lowest MemAvailable,
 *                                        when each PID died, when vmstat oom_kill first moved,
 *                                        when MemAvailable got back above RECOVER_KB after the
 *                                        first death, when MemAvailable first fell below 10 % of
 *                                        MemTotal (the daemons' SIGTERM level); writes key=value
 *                                        lines to FILE on exit. VMPROBE_GATE=FIFO: after 8
 *                                        samples it writes "go" into FIFO (the storm's gate)
 *                                        and reports when as go_mono_ms
 *   vmprobe forkstorm N CHILD_MB PARENT_MB_PER_CHILD INTERVAL_MS
 *                                        a parent ("forkstorm") that forks N children
 *                                        ("stormchild", each touching CHILD_MB and sleeping) and
 *                                        itself grows by PARENT_MB_PER_CHILD per child in memory
 *                                        that children do not inherit (MADV_DONTFORK)
 *   vmprobe waitexit PID SECONDS         sleep until PID has exited (a zombie counts), at most
 *                                        SECONDS; 0 if it did, 1 if not. A pidfd and poll(2): no
 *                                        polling loop of the harness's own to show up in the
 *                                        heartbeat (a shell loop forking usleep every 20 ms cost
 *                                        1.5-4 ms of emulated CPU a time)
 *   vmprobe cgns DIR PROG ARGS...        a cgroup namespace of its own, rooted at the group it
 *                                        runs in; then into the group DIR (cgroup.procs), and
 *                                        exec PROG: a daemon that sees its group as a
 *                                        container's does
 *
 * Static, no dependencies beyond libc: it runs in a busybox initramfs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

/* Reads a whole small file into buf; returns length or -1. */
static int slurp(const char *path, char *buf, int cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int n = 0, r;
    while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0) n += r;
    close(fd);
    buf[n] = 0;
    return n;
}

static long field(const char *text, const char *key) {
    const char *p = strstr(text, key);
    if (!p) return -1;
    return strtol(p + strlen(key), NULL, 10);
}

/* True while PID exists and is not a zombie. */
static int alive(int pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (slurp(path, buf, sizeof buf) < 0) return 0;
    char *rp = strrchr(buf, ')');
    if (!rp || rp[1] == 0) return 0;
    return rp[2] != 'Z' && rp[2] != 'X';
}

static int heartbeat(const char *file) {
    signal(SIGTERM, on_term);
    double worst = 0, prev = now_ms();
    struct timespec ten = {0, 10 * 1000 * 1000};
    /* Every stall of 1 ms or more: "END_MS LATE_MS" lines in FILE.log (the heartbeat starts
     * before the storm: what counts is read from the stalls after its start). */
    char logpath[512];
    snprintf(logpath, sizeof logpath, "%s.log", file);
    FILE *log = fopen(logpath, "w");
    while (!stop) {
        nanosleep(&ten, NULL);
        double t = now_ms();
        double late = t - prev - 10.0;
        prev = t;
        if (late >= 1 && log) {
            fprintf(log, "%.1f %.1f\n", t, late);
            fflush(log);
        }
        if (late > worst) {
            worst = late;
            FILE *f = fopen(file, "w");
            if (f) {
                fprintf(f, "%.1f\n", worst);
                fclose(f);
            }
            /* When the worst stall ended (CLOCK_MONOTONIC ms, the kernel log's clock). */
            char at[512];
            snprintf(at, sizeof at, "%s.at", file);
            f = fopen(at, "w");
            if (f) {
                fprintf(f, "%.1f\n", t);
                fclose(f);
            }
        }
    }
    return 0;
}

static int waitexit(int pid, int seconds) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) return errno == ESRCH ? 0 : 2;
    struct pollfd p = {fd, POLLIN, 0};
    int r;
    do r = poll(&p, 1, seconds * 1000);
    while (r < 0 && errno == EINTR);
    return r > 0 ? 0 : 1;
}

#define MAXW 64
static int watch(const char *file, long recover_kb, int npids, char **pids) {
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    int pid[MAXW];
    double death[MAXW];
    if (npids > MAXW) npids = MAXW;
    for (int i = 0; i < npids; i++) {
        pid[i] = atoi(pids[i]);
        death[i] = -1;
    }
    static char mem[8192], vm[16384];
    double t0 = now_ms(), first_death = -1, oom_first = -1, recovered = -1, below10 = -1;
    long min_avail = -1, min_swapfree = -1, oom0 = -1, oom_last = 0, samples = 0;
    struct timespec five = {0, 5 * 1000 * 1000};
    /* VMPROBE_GATE=FIFO: after 8 samples (40 ms: the heartbeat, started after the watcher, is
     * running by then), open the storm's gate (write "go" into FIFO), so
     * that no process of the harness is started at the storm's start. */
    const char *gate = getenv("VMPROBE_GATE");
    double go = -1;
    while (!stop) {
        if (gate && go < 0 && samples == 8) {
            int g = open(gate, O_WRONLY);
            go = now_ms();
            if (g >= 0) {
                if (write(g, "go\n", 3) < 0) go = -2;
                close(g);
            }
        }
        double t = now_ms() - t0;
        if (slurp("/proc/meminfo", mem, sizeof mem) > 0) {
            long avail = field(mem, "MemAvailable:");
            long sf = field(mem, "SwapFree:");
            long total = field(mem, "MemTotal:");
            if (below10 < 0 && avail >= 0 && avail * 10 < total) below10 = t;
            if (avail >= 0 && (min_avail < 0 || avail < min_avail)) min_avail = avail;
            if (sf >= 0 && (min_swapfree < 0 || sf < min_swapfree)) min_swapfree = sf;
            if (first_death >= 0 && recovered < 0 && avail >= recover_kb) recovered = t;
        }
        /* /proc/vmstat (about 5 KiB, generated on each read) every 20 ms: every 5 ms it
         * took about a third of the emulated CPU's time. */
        if (samples % 4 == 0 && slurp("/proc/vmstat", vm, sizeof vm) > 0) {
            long k = field(vm, "\noom_kill ");
            if (oom0 < 0) oom0 = k;
            if (k > oom0 && oom_first < 0) oom_first = t;
            oom_last = k;
        }
        for (int i = 0; i < npids; i++) {
            if (death[i] < 0 && !alive(pid[i])) {
                death[i] = t;
                if (first_death < 0) first_death = t;
            }
        }
        samples++;
        nanosleep(&five, NULL);
    }
    FILE *f = fopen(file, "w");
    if (!f) return 1;
    fprintf(f, "watch_ms=%.0f\nwatch_samples=%ld\nmin_avail_kb=%ld\nmin_swapfree_kb=%ld\n",
            now_ms() - t0, samples, min_avail, min_swapfree);
    /* The zero of every *_ms figure above and below, on the heartbeat's clock. */
    fprintf(f, "watch_t0_mono_ms=%.1f\n", t0);
    if (gate) fprintf(f, "go_mono_ms=%.1f\n", go);
    fprintf(f, "kernel_oom_first_ms=%.1f\nkernel_oom_kills=%ld\n", oom_first,
            oom0 < 0 ? 0 : oom_last - oom0);
    fprintf(f, "first_death_ms=%.1f\nrecovered_ms=%.1f\nbelow10_ms=%.1f\n", first_death, recovered,
            below10);
    for (int i = 0; i < npids; i++) fprintf(f, "death_ms_%d=%.1f\n", pid[i], death[i]);
    fclose(f);
    return 0;
}

static void touch(char *p, size_t n) {
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
}

static int forkstorm(int n, long child_mb, long parent_mb, long interval_ms) {
    prctl(PR_SET_NAME, "forkstorm");
    size_t cap = (size_t)parent_mb * n << 20;
    char *own = NULL;
    if (cap) {
        own = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (own == MAP_FAILED) return 1;
        madvise(own, cap, MADV_DONTFORK);
    }
    printf("forkstorm %d\n", getpid());
    fflush(stdout);
    struct timespec iv = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    for (int i = 0; i < n; i++) {
        pid_t c = fork();
        if (c == 0) {
            prctl(PR_SET_NAME, "stormchild");
            size_t sz = (size_t)child_mb << 20;
            char *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED) touch(p, sz);
            for (;;) pause();
        }
        if (own) touch(own + ((size_t)parent_mb * i << 20), (size_t)parent_mb << 20);
        nanosleep(&iv, NULL);
    }
    for (;;) {
        if (wait(NULL) < 0 && errno == ECHILD) pause();
    }
}

static int cgns(const char *dir, char **argv) {
    char path[512];
    if (unshare(CLONE_NEWCGROUP) != 0) {
        perror("vmprobe: unshare(CLONE_NEWCGROUP)");
        return 1;
    }
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    execvp(argv[0], argv);
    perror(argv[0]);
    return 127;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "now")) {
        printf("%.0f\n", now_ms());
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "heartbeat")) return heartbeat(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "watch"))
        return watch(argv[2], atol(argv[3]), argc - 4, argv + 4);
    if (argc == 4 && !strcmp(argv[1], "waitexit")) return waitexit(atoi(argv[2]), atoi(argv[3]));
    if (argc == 6 && !strcmp(argv[1], "forkstorm"))
        return forkstorm(atoi(argv[2]), atol(argv[3]), atol(argv[4]), atol(argv[5]));
    if (argc >= 4 && !strcmp(argv[1], "cgns")) return cgns(argv[2], argv + 3);
    fprintf(stderr,
            "usage: vmprobe now | heartbeat FILE | watch FILE RECOVER_KB PID... |\n"
            "       forkstorm N CHILD_MB PARENT_MB_PER_CHILD INTERVAL_MS | cgns DIR PROG ARGS...\n");
    return 2;
}
