// SPDX-License-Identifier: Apache-2.0
// A known CPU profile for the profile probe: main → run → burn_cpu_here for 4·d of CPU time,
// then → burn_cpu_other for d, until it has spent MS milliseconds of CPU in run() (default
// 2000). So 80 % of the samples taken in run() must be in burn_cpu_here and 20 % in
// burn_cpu_other, each under main;run. The budget counts from main, not from exec: on a slow
// machine (a kernel under qemu TCG with its root over 9p) the start-up alone (exec, the dynamic
// loader) can use more CPU than MS, which used to leave run() no time at all. d varies from one
// round to the next (0.25 to 2.5 ms, a fixed pseudo-random sequence): with a constant period
// the rounds could keep step with the sampling timer and put most samples in one of the two
// functions. It prints "pid=P", "cpu_ns=N" (the process's CPU time at its end, start-up
// included, from the kernel's own accounting), "here_ns=N" and "other_ns=N". With THREADS > 1
// (second argument), that many threads share the work, each until its own CPU time reaches
// MS / THREADS.
//
// The functions are kept out of line and with a frame pointer whatever the build's flags
// (the attributes below): the kernel walks user stacks by frame pointer.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define KEEP __attribute__((noinline, noipa, optimize("no-omit-frame-pointer")))

static long cpu_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static volatile unsigned long sink;


long KEEP burn_cpu_here(long ns)
{
	long t = 0;
	unsigned long x = sink;
	long start = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
	while (t < ns) {
		for (int i = 0; i < 200000; i++)
			x = x * 6364136223846793005UL + (unsigned long)i;
		sink = x;
		t = cpu_ns(CLOCK_THREAD_CPUTIME_ID) - start;
	}
	return t;
}

long KEEP burn_cpu_other(long ns)
{
	long t = 0;
	unsigned long x = sink;
	long start = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
	while (t < ns) {
		for (int i = 0; i < 200000; i++)
			x = x * 2862933555777941757UL + (unsigned long)i;
		sink = x;
		t = cpu_ns(CLOCK_THREAD_CPUTIME_ID) - start;
	}
	return t;
}

static void KEEP run(clockid_t clock, long total_ns, long *here, long *other)
{
	unsigned long r = 88172645463325252UL;
	while (cpu_ns(clock) < total_ns) {
		r ^= r << 13, r ^= r >> 7, r ^= r << 17;
		long d = 250000 + (long)(r % 2250000);
		*here += burn_cpu_here(4 * d);
		*other += burn_cpu_other(d);
	}
}

struct share {
	long ns, here, other;
};

static void *worker(void *arg)
{
	struct share *s = arg;
	run(CLOCK_THREAD_CPUTIME_ID, s->ns, &s->here, &s->other);
	return NULL;
}

int KEEP main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 2000;
	int threads = argc > 2 ? atoi(argv[2]) : 1;
	long here = 0, other = 0;
	if (threads <= 1) {
		run(CLOCK_PROCESS_CPUTIME_ID, cpu_ns(CLOCK_PROCESS_CPUTIME_ID) + ms * 1000000L, &here, &other);
	} else {
		pthread_t t[threads];
		struct share s[threads];
		for (int i = 0; i < threads; i++) {
			s[i] = (struct share){.ns = ms * 1000000L / threads};
			pthread_create(&t[i], NULL, worker, &s[i]);
		}
		for (int i = 0; i < threads; i++) {
			pthread_join(t[i], NULL);
			here += s[i].here;
			other += s[i].other;
		}
	}
	printf("pid=%d\ncpu_ns=%ld\nhere_ns=%ld\nother_ns=%ld\n", getpid(), cpu_ns(CLOCK_PROCESS_CPUTIME_ID), here, other);
	return 0;
}
