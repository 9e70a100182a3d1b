// SPDX-License-Identifier: Apache-2.0
// bench workload: a fixed amount of pure CPU work, so that any time a sampler takes from it
// shows as a longer run. THREADS threads (default 1) each do N iterations of a multiply-add
// chain, in a call chain three functions deep (a stack for a profiler to take); prints the
// elapsed wall-clock seconds and the CPU seconds the process used (the kernel's accounting,
// which charges a sampling interrupt to the task it interrupts, and not the time the task
// waited for a CPU: on a shared machine the steadier figure).
//   busy_loop N [THREADS]
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;
static long n;

static double now(clockid_t clock)
{
	struct timespec t;
	clock_gettime(clock, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) static unsigned long leaf(long k)
{
	unsigned long x = sink;
	for (long i = 0; i < k; i++)
		x = x * 6364136223846793005UL + (unsigned long)i;
	return x;
}

__attribute__((noinline)) static unsigned long middle(long k)
{
	unsigned long x = 0;
	for (long done = 0; done < k; done += 1000000)
		x ^= leaf(k - done < 1000000 ? k - done : 1000000);
	return x;
}

static void *worker(void *arg)
{
	(void)arg;
	sink = middle(n);
	return NULL;
}

int main(int argc, char **argv)
{
	n = argc > 1 ? atol(argv[1]) : 2000000000L;
	int threads = argc > 2 ? atoi(argv[2]) : 1;
	pthread_t t[threads];
	double start = now(CLOCK_MONOTONIC), cpu = now(CLOCK_PROCESS_CPUTIME_ID);
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	printf("%.6f %.6f\n", now(CLOCK_MONOTONIC) - start, now(CLOCK_PROCESS_CPUTIME_ID) - cpu);
	return 0;
}
