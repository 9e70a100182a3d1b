// SPDX-License-Identifier: Apache-2.0
/*
 * procimage-workload: small workloads with known behaviour for the integration tests.
 *
 *   sleeps N MS     sleep N times for MS milliseconds; print "PID VOLUNTARY INVOLUNTARY"
 *                   (its context switches, from /proc/self/status)
 *   signals N SIG   send itself N signals SIG (handled); print "PID"
 *   contend MS spin|yield
 *                   a thread spins (or calls sched_yield in a loop) for MS milliseconds on
 *                   CPU 0, beside a spinning child process on the same CPU; print
 *                   "TID VOLUNTARY INVOLUNTARY" (the thread's switches, /proc/thread-self/status,
 *                   read just before it ends)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long status_field_of(const char *path, const char *name)
{
	FILE *f = fopen(path, "r");
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

static long status_field(const char *name) { return status_field_of("/proc/self/status", name); }

static void pin_cpu0(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof set, &set);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct contend { long ms; int yield; long tid, vol, invol; };

static void *contend_thread(void *arg)
{
	struct contend *c = arg;
	pin_cpu0();
	double end = now_ms() + c->ms;
	while (now_ms() < end)
		if (c->yield)
			sched_yield();
	c->tid = syscall(SYS_gettid);
	c->vol = status_field_of("/proc/thread-self/status", "voluntary_ctxt_switches");
	c->invol = status_field_of("/proc/thread-self/status", "nonvoluntary_ctxt_switches");
	return NULL;
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
		/* the switch counts, and the wall-clock time just before they were read: a switch
		 * after it (printing, exiting) is in no count printed here */
		struct timespec wall;
		clock_gettime(CLOCK_REALTIME, &wall);
		long vol = status_field("voluntary_ctxt_switches");
		long invol = status_field("nonvoluntary_ctxt_switches");
		printf("%d %ld %ld %lld\n", getpid(), vol, invol, (long long)wall.tv_sec * 1000000000LL + wall.tv_nsec);
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
	if (argc >= 4 && strcmp(argv[1], "contend") == 0) {
		struct contend c = {atol(argv[2]), strcmp(argv[3], "yield") == 0, 0, 0, 0};
		pid_t spinner = fork();
		if (spinner == 0) {
			pin_cpu0();
			for (;;)
				;
		}
		pthread_t th;
		pthread_create(&th, NULL, contend_thread, &c);
		pthread_join(th, NULL);
		kill(spinner, SIGKILL);
		waitpid(spinner, NULL, 0);
		printf("%ld %ld %ld\n", c.tid, c.vol, c.invol);
		return 0;
	}
	fprintf(stderr, "usage: procimage-workload sleeps N MS | signals N SIG | contend MS spin|yield\n");
	return 2;
}
