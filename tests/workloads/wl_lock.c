// SPDX-License-Identifier: Apache-2.0
/*
 * wl-lock: a fixed schedule of pthread lock holds and waits for the lock probe's tests.
 *
 *   wl-lock LOG [GO_FIFO]
 *
 * With GO_FIFO it first reads one byte from that FIFO (so a tracer can attach to the running
 * process); with WL_LOCK_DELAY_MS in the environment it first sleeps that long. Then, phase by
 * phase:
 *   mutex   A holds M 20 ms; meanwhile B fails pthread_mutex_trylock(M) (EBUSY), fails
 *           pthread_mutex_timedlock(M) after 5 ms (ETIMEDOUT), then blocks in
 *           pthread_mutex_lock(M) until A releases it, and holds it 2 ms
 *   rwlock  R1 and R2 hold RW for reading at the same time, 10 ms each; W blocks in
 *           pthread_rwlock_wrlock(RW) meanwhile and holds it 3 ms
 *   spin    X holds S 5 ms; Y spins in pthread_spin_lock(S) meanwhile
 *   nested  the main thread holds M, then M2 inside it (3 ms), then M alone 2 ms more
 * Every thread writes what it measured itself (CLOCK_MONOTONIC, ns) to LOG as key=value lines:
 * thread ids, lock addresses, hold and wait durations, error numbers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t M = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t M2 = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t RW = PTHREAD_RWLOCK_INITIALIZER;
static pthread_spinlock_t S;
static sem_t a_holds, x_holds;
static pthread_barrier_t readers_hold;
static FILE *logf;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* This process's start, clock ticks since boot (/proc/self/stat field 22), or -1. */
static long long start_ticks(void)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* after ") ": field 3 (state) onwards; field 22 is the 20th of them */
	p += 2;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p ? atoll(p) : -1;
}

static void put(const char *key, long long v)
{
	/* stdio's own lock is not a pthread mutex: it does not disturb the schedule */
	fprintf(logf, "%s=%lld\n", key, v);
	fflush(logf);
}

static long tid(void) { return syscall(SYS_gettid); }

static void *thread_a(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "wl-holder-a");
	put("a_tid", tid());
	pthread_mutex_lock(&M);
	long long t0 = now_ns();
	sem_post(&a_holds);
	sleep_ms(20);
	long long t1 = now_ns();
	pthread_mutex_unlock(&M);
	put("a_hold_ns", t1 - t0);
	return NULL;
}

static void *thread_b(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "wl-waiter-b");
	put("b_tid", tid());
	sem_wait(&a_holds);
	put("b_trylock_ret", pthread_mutex_trylock(&M));
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_nsec += 5000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	long long t0 = now_ns();
	int r = pthread_mutex_timedlock(&M, &dl);
	long long t1 = now_ns();
	put("b_timedlock_ret", r);
	put("b_timedlock_wait_ns", t1 - t0);
	t0 = now_ns();
	pthread_mutex_lock(&M);
	t1 = now_ns();
	sleep_ms(2);
	long long t2 = now_ns();
	pthread_mutex_unlock(&M);
	put("b_lock_wait_ns", t1 - t0);
	put("b_hold_ns", t2 - t1);
	return NULL;
}

static void *reader(void *arg)
{
	long n = (long)arg;
	char name[32];
	snprintf(name, sizeof name, "wl-reader-%ld", n);
	pthread_setname_np(pthread_self(), name);
	snprintf(name, sizeof name, "r%ld_tid", n);
	put(name, tid());
	pthread_rwlock_rdlock(&RW);
	long long t0 = now_ns();
	pthread_barrier_wait(&readers_hold); /* both readers hold RW now */
	sleep_ms(10);
	long long t1 = now_ns();
	pthread_rwlock_unlock(&RW);
	snprintf(name, sizeof name, "r%ld_hold_ns", n);
	put(name, t1 - t0);
	return NULL;
}

static void *writer(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "wl-writer");
	put("w_tid", tid());
	pthread_barrier_wait(&readers_hold);
	long long t0 = now_ns();
	pthread_rwlock_wrlock(&RW);
	long long t1 = now_ns();
	sleep_ms(3);
	long long t2 = now_ns();
	pthread_rwlock_unlock(&RW);
	put("w_wait_ns", t1 - t0);
	put("w_hold_ns", t2 - t1);
	return NULL;
}

static void *spin_x(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "wl-spin-x");
	put("x_tid", tid());
	pthread_spin_lock(&S);
	long long t0 = now_ns();
	sem_post(&x_holds);
	sleep_ms(5);
	long long t1 = now_ns();
	pthread_spin_unlock(&S);
	put("x_hold_ns", t1 - t0);
	return NULL;
}

static void *spin_y(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "wl-spin-y");
	put("y_tid", tid());
	sem_wait(&x_holds);
	long long t0 = now_ns();
	pthread_spin_lock(&S);
	long long t1 = now_ns();
	pthread_spin_unlock(&S);
	put("y_wait_ns", t1 - t0);
	return NULL;
}

static void run2(void *(*f1)(void *), void *a1, void *(*f2)(void *), void *a2, void *(*f3)(void *))
{
	pthread_t t[3];
	int n = 0;
	pthread_create(&t[n++], NULL, f1, a1);
	pthread_create(&t[n++], NULL, f2, a2);
	if (f3)
		pthread_create(&t[n++], NULL, f3, NULL);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: wl-lock LOG [GO_FIFO]\n");
		return 2;
	}
	logf = fopen(argv[1], "w");
	if (!logf)
		return 1;
	put("pid", getpid());
	put("start_ticks", start_ticks());
	put("clk_tck", sysconf(_SC_CLK_TCK));
	put("mutex_addr", (long long)(uintptr_t)&M);
	put("mutex2_addr", (long long)(uintptr_t)&M2);
	put("rwlock_addr", (long long)(uintptr_t)&RW);
	put("spin_addr", (long long)(uintptr_t)&S);
	if (argc >= 3) {
		int fd = open(argv[2], O_RDONLY);
		char c;
		if (fd < 0 || read(fd, &c, 1) != 1)
			return 1;
		close(fd);
	}
	if (getenv("WL_LOCK_DELAY_MS"))
		sleep_ms(atoi(getenv("WL_LOCK_DELAY_MS")));
	pthread_spin_init(&S, PTHREAD_PROCESS_PRIVATE);
	sem_init(&a_holds, 0, 0);
	sem_init(&x_holds, 0, 0);
	pthread_barrier_init(&readers_hold, NULL, 3);

	run2(thread_a, NULL, thread_b, NULL, NULL);
	run2(reader, (void *)1L, reader, (void *)2L, writer);
	run2(spin_x, NULL, spin_y, NULL, NULL);

	put("main_tid", tid());
	pthread_mutex_lock(&M);
	long long t0 = now_ns();
	pthread_mutex_lock(&M2);
	long long t1 = now_ns();
	sleep_ms(3);
	long long t2 = now_ns();
	pthread_mutex_unlock(&M2);
	sleep_ms(2);
	long long t3 = now_ns();
	pthread_mutex_unlock(&M);
	put("outer_hold_ns", t3 - t0);
	put("inner_hold_ns", t2 - t1);
	put("done", 1);
	fclose(logf);
	return 0;
}
