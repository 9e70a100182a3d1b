// SPDX-License-Identifier: Apache-2.0
// bench workloads; each prints its elapsed seconds.
//   micro getppid N    N getppid() calls
//   micro pipe N       N round trips of one byte between two processes over two pipes
//   micro mutex N      two threads taking turns on one pthread mutex, N lock/unlock each
//   micro forkexec N   N times fork + exec /bin/true + wait
//   micro spin SEC     burn one CPU for SEC seconds (a busy target)
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static volatile long shared;
static long mutex_n;

static void *mutex_worker(void *arg)
{
	(void)arg;
	for (long i = 0; i < mutex_n; i++) {
		pthread_mutex_lock(&mu);
		shared++;
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: micro getppid|pipe|mutex|forkexec|spin N\n");
		return 2;
	}
	long n = atol(argv[2]);
	double t0 = now();
	if (!strcmp(argv[1], "getppid")) {
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
	} else if (!strcmp(argv[1], "pipe")) {
		int a[2], b[2];
		if (pipe(a) || pipe(b))
			return 1;
		pid_t p = fork();
		char c = 0;
		if (p == 0) {
			for (long i = 0; i < n; i++) {
				if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
					_exit(1);
			}
			_exit(0);
		}
		for (long i = 0; i < n; i++) {
			if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
				return 1;
		}
		waitpid(p, NULL, 0);
	} else if (!strcmp(argv[1], "mutex")) {
		mutex_n = n;
		pthread_t t1, t2;
		pthread_create(&t1, NULL, mutex_worker, NULL);
		pthread_create(&t2, NULL, mutex_worker, NULL);
		pthread_join(t1, NULL);
		pthread_join(t2, NULL);
	} else if (!strcmp(argv[1], "forkexec")) {
		for (long i = 0; i < n; i++) {
			pid_t p = fork();
			if (p == 0) {
				execl("/bin/true", "true", (char *)NULL);
				_exit(127);
			}
			waitpid(p, NULL, 0);
		}
	} else if (!strcmp(argv[1], "spin")) {
		while (now() - t0 < n)
			shared++;
	} else {
		fprintf(stderr, "micro: unknown workload %s\n", argv[1]);
		return 2;
	}
	printf("%.6f\n", now() - t0);
	return 0;
}
