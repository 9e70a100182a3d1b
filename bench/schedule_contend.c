// SPDX-License-Identifier: Apache-2.0
// bench workload: THREADS threads (default 4 per CPU) each do ROUNDS rounds of ~200 µs of CPU
// work followed by a 100 µs sleep, so the CPUs are oversubscribed and threads keep waking,
// being preempted and waiting in the run queue. Prints the elapsed seconds.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long rounds = 2000;
static volatile uint64_t sink;

static void *worker(void *arg)
{
	(void)arg;
	struct timespec nap = {0, 100000};
	for (long r = 0; r < rounds; r++) {
		uint64_t x = (uint64_t)r;
		for (int i = 0; i < 60000; i++) /* about 200 µs on a current x86 core */
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		sink = x;
		nanosleep(&nap, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = argc > 1 ? atoi(argv[1]) : (int)(4 * (cpus > 0 ? cpus : 1));
	if (argc > 2)
		rounds = atol(argv[2]);
	pthread_t *th = calloc((size_t)threads, sizeof *th);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.6f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	free(th);
	return 0;
}
