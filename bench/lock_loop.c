// SPDX-License-Identifier: Apache-2.0
/*
 * lock_loop N FIFO: two threads each lock and unlock one shared pthread mutex N times, with a
 * little work inside the lock (~5 % of an iteration) and more outside it, so that the two
 * threads meet on the lock now and then as real programs do. Waits for a byte on FIFO first (so a tracer can attach to the running process), then prints
 * the loop's wall time in seconds.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long counter;
static long n;

static void work(int units)
{
	for (volatile int i = 0; i < units; i++) {
	}
}

static void *loop(void *arg)
{
	(void)arg;
	for (long i = 0; i < n; i++) {
		pthread_mutex_lock(&m);
		counter++;
		work(20);
		pthread_mutex_unlock(&m);
		work(400);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: lock_loop N FIFO\n");
		return 2;
	}
	n = atol(argv[1]);
	int fd = open(argv[2], O_RDONLY);
	char c;
	if (fd < 0 || read(fd, &c, 1) != 1)
		return 1;
	close(fd);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	pthread_t t1, t2;
	pthread_create(&t1, NULL, loop, NULL);
	pthread_create(&t2, NULL, loop, NULL);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (counter != 2UL * (unsigned long)n)
		return 1;
	printf("%.6f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}
