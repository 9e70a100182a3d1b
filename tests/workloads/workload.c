// SPDX-License-Identifier: Apache-2.0
/*
 * procimage-workload: small workloads with known behaviour for the integration tests.
 *
 *   sleeps N MS     sleep N times for MS milliseconds; print "PID VOLUNTARY INVOLUNTARY"
 *                   (its context switches, from /proc/self/status)
 *   signals N SIG   send itself N signals SIG (handled); print "PID"
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long status_field(const char *name)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(name);
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, name, n) == 0 && line[n] == ':')
			v = atol(line + n + 1);
	if (f)
		fclose(f);
	return v;
}

static volatile sig_atomic_t caught;
static void on_signal(int sig)
{
	(void)sig;
	caught++;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "sleeps") == 0) {
		int n = atoi(argv[2]);
		long ms = atol(argv[3]);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		for (int i = 0; i < n; i++)
			nanosleep(&ts, NULL);
		printf("%d %ld %ld\n", getpid(), status_field("voluntary_ctxt_switches"),
		       status_field("nonvoluntary_ctxt_switches"));
		return 0;
	}
	if (argc >= 4 && strcmp(argv[1], "signals") == 0) {
		int n = atoi(argv[2]);
		int sig = atoi(argv[3]);
		signal(sig, on_signal);
		for (int i = 0; i < n; i++)
			raise(sig);
		printf("%d %d\n", getpid(), (int)caught);
		return caught == n ? 0 : 1;
	}
	fprintf(stderr, "usage: procimage-workload sleeps N MS | signals N SIG\n");
	return 2;
}
