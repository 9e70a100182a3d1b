// SPDX-License-Identifier: Apache-2.0
//
// Test workload of keytime's created_by: one long-lived thread, then more short threads one
// after another than keytime once remembered creators for (65,536), then the long-lived thread
// ends. Its exit must still say who created it.
//
//   wl-births N     prints "long_tid=T short=N" once every thread is done, and exits 0
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int release[2];
static volatile pid_t long_tid;

static void *long_lived(void *arg)
{
	(void)arg;
	long_tid = gettid();
	char c;
	if (read(release[0], &c, 1) != 1)
		return (void *)1;
	return NULL;
}

static void *short_lived(void *arg)
{
	return arg;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 70000;
	if (pipe(release) != 0)
		return 2;
	pthread_t lt;
	if (pthread_create(&lt, NULL, long_lived, NULL) != 0)
		return 2;
	for (long i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, short_lived, NULL) != 0 || pthread_join(t, NULL) != 0) {
			fprintf(stderr, "thread %ld failed\n", i);
			return 2;
		}
	}
	if (write(release[1], "x", 1) != 1)
		return 2;
	void *ret;
	pthread_join(lt, &ret);
	printf("long_tid=%d short=%ld\n", (int)long_tid, n);
	return ret == NULL ? 0 : 2;
}
