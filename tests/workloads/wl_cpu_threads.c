// SPDX-License-Identifier: Apache-2.0
// Two threads each burn CPU until their own thread CPU clock reaches MS milliseconds (default
// 50), read that clock once more just before they end and print "TID NS" each.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long target_ns = 50 * 1000000L;

static long thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

struct result { long tid, ns; };

static void *burn(void *arg)
{
	struct result *r = arg;
	volatile unsigned long x = 0;
	while (thread_cpu_ns() < target_ns)
		for (int i = 0; i < 1000; i++)
			x += i;
	r->tid = syscall(SYS_gettid);
	r->ns = thread_cpu_ns();
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		target_ns = atol(argv[1]) * 1000000L;
	pthread_t th[2];
	struct result res[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, burn, &res[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++)
		printf("%ld %ld\n", res[i].tid, res[i].ns);
	return 0;
}
