// SPDX-License-Identifier: Apache-2.0
/*
 * wl-lock-loop: uncontended pthread lock/unlock pairs in one thread, for counting the lock
 * probe's uprobe hits per pair, then an error-checking and a recursive mutex taken twice.
 *
 *   wl-lock-loop LOG GO_FIFO N
 *
 * Writes pid and lock addresses to LOG, reads one byte from GO_FIFO (a tracer attaches
 * meanwhile), then:
 *   loop       N x pthread_mutex_lock/unlock(M), N x pthread_rwlock_rdlock/unlock(RW),
 *              N x pthread_rwlock_wrlock/unlock(RW)
 *   errcheck   pthread_mutex_lock(EM), holds 3 ms, locks it again (EDEADLK), unlocks it
 *   recursive  pthread_mutex_lock(RM) twice, holds 4 ms, unlocks it twice
 * and writes what it measured (CLOCK_MONOTONIC ns, return values) to LOG as key=value lines.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t M = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t RW = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t EM, RM;
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

static void put(const char *key, long long v)
{
	fprintf(logf, "%s=%lld\n", key, v);
	fflush(logf);
}

static void init_mutex(pthread_mutex_t *m, int kind)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, kind);
	pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: wl-lock-loop LOG GO_FIFO N\n");
		return 2;
	}
	logf = fopen(argv[1], "w");
	if (!logf)
		return 1;
	long n = atol(argv[3]);
	init_mutex(&EM, PTHREAD_MUTEX_ERRORCHECK);
	init_mutex(&RM, PTHREAD_MUTEX_RECURSIVE);
	put("pid", getpid());
	put("n", n);
	put("mutex_addr", (long long)(uintptr_t)&M);
	put("rwlock_addr", (long long)(uintptr_t)&RW);
	put("errcheck_addr", (long long)(uintptr_t)&EM);
	put("recursive_addr", (long long)(uintptr_t)&RM);
	int fd = open(argv[2], O_RDONLY);
	char c;
	if (fd < 0 || read(fd, &c, 1) != 1)
		return 1;
	close(fd);

	for (long i = 0; i < n; i++) {
		pthread_mutex_lock(&M);
		pthread_mutex_unlock(&M);
	}
	for (long i = 0; i < n; i++) {
		pthread_rwlock_rdlock(&RW);
		pthread_rwlock_unlock(&RW);
	}
	for (long i = 0; i < n; i++) {
		pthread_rwlock_wrlock(&RW);
		pthread_rwlock_unlock(&RW);
	}

	int r = pthread_mutex_lock(&EM);
	long long t0 = now_ns();
	sleep_ms(3);
	int again = pthread_mutex_lock(&EM);
	long long t1 = now_ns();
	pthread_mutex_unlock(&EM);
	put("errcheck_first_ret", r);
	put("errcheck_again_ret", again);
	put("errcheck_hold_ns", t1 - t0);

	pthread_mutex_lock(&RM);
	t0 = now_ns();
	int r2 = pthread_mutex_lock(&RM);
	sleep_ms(4);
	pthread_mutex_unlock(&RM);
	t1 = now_ns();
	pthread_mutex_unlock(&RM);
	put("recursive_again_ret", r2);
	put("recursive_hold_ns", t1 - t0);
	put("done", 1);
	fclose(logf);
	return 0;
}
