// SPDX-License-Identifier: Apache-2.0
/*
 * wl-resource: a process whose resource use is known in advance, for the resource probe's
 * accuracy tests. Modes:
 *
 *   wl-resource [DIR]   the accuracy run (default):
 *     1. burns BURN_MS of CPU time on the main thread;
 *     2. allocates and touches MEM_MB MiB;
 *     3. writes WRITE_MB MiB to a file in DIR (default /tmp) and reads READ_MB MiB of it back;
 *     4. notes its own accounting as the kernel shows it (/proc/self/stat utime+stime,
 *        /proc/self/io rchar/wchar, /proc/self/status VmRSS) and the time it did so, then holds
 *        still for HOLD_MS so the probe samples exactly those figures;
 *     5. runs a thread that spins for BUSY_MS at nice -20, in a session of its own whose
 *        autogroup is at nice -20 too (so the other work on a shared machine barely dents it),
 *        noting its tid, its own CPU time and the wall time;
 *     6. runs a short thread that burns SHORT_MS of CPU and exits (a thread that ends inside
 *        an interval), noting its tid and CPU time;
 *     7. exits 0.
 *   wl-resource spin SECONDS   one thread spinning at nice -20 for SECONDS (notes pid, tid)
 *
 * What it did goes to the file named by $PROCIMAGE_RESOURCE_LOG (else stderr) as key=value
 * lines; times are ns (CLOCK_REALTIME for moments), sizes bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
	BURN_MS = 1500,
	MEM_MB = 64,
	WRITE_MB = 8,
	READ_MB = 6,
	HOLD_MS = 2600,
	BUSY_MS = 2600,
	SHORT_MS = 200,
};

static FILE *logf_;

static void note(const char *key, long long value)
{
	fprintf(logf_, "%s=%lld\n", key, value);
	fflush(logf_);
}

static long long now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* Spin until this thread has used `ms` of CPU time. */
static void burn_cpu(long ms)
{
	const long long until = now_ns(CLOCK_THREAD_CPUTIME_ID) + ms * 1000000LL;
	volatile uint64_t x = 1;
	while (now_ns(CLOCK_THREAD_CPUTIME_ID) < until)
		for (int i = 0; i < 10000; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
}

static char *read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0) {
		perror(path);
		exit(1);
	}
	buf[n] = 0;
	return buf;
}

static long long field_after(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	if (!p) {
		fprintf(stderr, "wl-resource: no %s\n", key);
		exit(1);
	}
	return strtoll(p + strlen(key), NULL, 10);
}

static void note_accounting(void)
{
	char stat[1024], io[1024], status[4096];
	long long t = now_ns(CLOCK_REALTIME);
	read_text("/proc/self/stat", stat, sizeof stat);
	read_text("/proc/self/io", io, sizeof io);
	read_text("/proc/self/status", status, sizeof status);
	/* utime and stime: fields 14 and 15, counted from the end of "(comm)" */
	const char *p = strrchr(stat, ')');
	unsigned long long ut = 0, st = 0;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
		fprintf(stderr, "wl-resource: cannot parse /proc/self/stat\n");
		exit(1);
	}
	const long long tick_ns = 1000000000LL / sysconf(_SC_CLK_TCK);
	note("truth_ts_ns", t);
	note("cpu_ns", (long long)(ut + st) * tick_ns);
	note("rchar", field_after(io, "rchar: "));
	note("wchar", field_after(io, "wchar: "));
	note("vmrss_bytes", field_after(status, "VmRSS:") * 1024);
	note("rss_anon_bytes", field_after(status, "RssAnon:") * 1024);
}

struct busy {
	long ms;
	long long tid, cpu_ns, wall_ns, start_ns, end_ns;
};

static void *busy_main(void *arg)
{
	struct busy *b = arg;
	b->tid = syscall(SYS_gettid);
	setpriority(PRIO_PROCESS, (id_t)b->tid, -20); /* root: the thread barely shares its CPU */
	long long c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	b->start_ns = now_ns(CLOCK_REALTIME);
	volatile uint64_t x = 1;
	while (now_ns(CLOCK_REALTIME) - b->start_ns < b->ms * 1000000LL)
		for (int i = 0; i < 1000; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	b->end_ns = now_ns(CLOCK_REALTIME);
	b->cpu_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
	b->wall_ns = b->end_ns - b->start_ns;
	return NULL;
}

static void *short_main(void *arg)
{
	long long *out = arg;
	out[0] = syscall(SYS_gettid);
	burn_cpu(SHORT_MS);
	out[1] = now_ns(CLOCK_THREAD_CPUTIME_ID);
	return NULL;
}

/* Nice values only order threads inside one autogroup (one session): to keep the busy thread
 * ahead of the rest of a shared machine, give the workload a session of its own and raise that
 * session's weight too (root). Best effort: noted in the log. */
static void own_autogroup(void)
{
	int ok = 0;
	if (setsid() >= 0) {
		FILE *f = fopen("/proc/self/autogroup", "w");
		if (f) {
			ok = fprintf(f, "-20") > 0;
			ok &= fclose(f) == 0;
		}
	}
	note("own_autogroup", ok);
}

static int spin_mode(long secs)
{
	struct busy b = {.ms = secs * 1000};
	pthread_t t;
	pthread_create(&t, NULL, busy_main, &b);
	sleep_ms(100);
	note("spin_tid", b.tid);
	pthread_join(t, NULL);
	note("spin_cpu_ns", b.cpu_ns);
	note("spin_wall_ns", b.wall_ns);
	return 0;
}

int main(int argc, char **argv)
{
	const char *log = getenv("PROCIMAGE_RESOURCE_LOG");
	logf_ = log ? fopen(log, "w") : stderr;
	if (!logf_) {
		perror(log);
		return 1;
	}
	note("pid", getpid());
	own_autogroup();
	if (argc > 2 && strcmp(argv[1], "spin") == 0)
		return spin_mode(atol(argv[2]));
	const char *dir = argc > 1 ? argv[1] : "/tmp";

	/* 1. CPU */
	burn_cpu(BURN_MS);
	note("burn_ns", (long long)BURN_MS * 1000000LL);

	/* 2. memory */
	size_t mem = (size_t)MEM_MB << 20;
	char *m = malloc(mem);
	if (!m)
		return 1;
	long page = sysconf(_SC_PAGESIZE);
	for (size_t i = 0; i < mem; i += (size_t)page)
		m[i] = (char)(i / (size_t)page) | 1;
	note("mem_bytes", (long long)mem);

	/* 3. I/O */
	char path[4096];
	snprintf(path, sizeof path, "%s/wl-resource.%d", dir, getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	unlink(path);
	static char chunk[1 << 16];
	memset(chunk, 'r', sizeof chunk);
	for (long done = 0; done < (long)WRITE_MB << 20; done += (long)sizeof chunk)
		if (pwrite(fd, chunk, sizeof chunk, done) != (ssize_t)sizeof chunk) {
			perror("pwrite");
			return 1;
		}
	for (long done = 0; done < (long)READ_MB << 20; done += (long)sizeof chunk)
		if (pread(fd, chunk, sizeof chunk, done) != (ssize_t)sizeof chunk) {
			perror("pread");
			return 1;
		}
	close(fd);
	note("written_bytes", (long long)WRITE_MB << 20);
	note("read_bytes", (long long)READ_MB << 20);

	/* 4. the kernel's own accounting, then stillness */
	note_accounting();
	sleep_ms(HOLD_MS);
	note("hold_end_ns", now_ns(CLOCK_REALTIME));

	/* 5. a fully busy thread */
	struct busy b = {.ms = BUSY_MS};
	pthread_t t;
	pthread_create(&t, NULL, busy_main, &b);
	pthread_join(t, NULL);
	note("busy_tid", b.tid);
	note("busy_cpu_ns", b.cpu_ns);
	note("busy_wall_ns", b.wall_ns);
	note("busy_start_ns", b.start_ns);
	note("busy_end_ns", b.end_ns);

	/* 6. a thread that ends inside an interval */
	long long sh[2] = {0, 0};
	pthread_create(&t, NULL, short_main, sh);
	pthread_join(t, NULL);
	note("short_tid", sh[0]);
	note("short_cpu_ns", sh[1]);

	m[0] = 0; /* the memory stays in use until the end */
	note("exit_ns", now_ns(CLOCK_REALTIME));
	return 0;
}
