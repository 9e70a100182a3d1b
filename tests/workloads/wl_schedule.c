// SPDX-License-Identifier: Apache-2.0
//
// Workload for the schedule probe's tests: threads that wait for a CPU, and what the kernel's
// own accounting (/proc/thread-self/schedstat: on-CPU ns, run-queue wait ns, times run) says
// about each of them. Every thread reads its schedstat when it starts and once more at its very
// end, just before it returns, so the figures cover the thread's whole life as the probe sees it
// (a new thread starts with zeroed schedstat).
//
//   wl-schedule contend WORKERS SECONDS
//       WORKERS threads (more than CPUs) each spin 2 ms of CPU time, sleep 1 ms, again and
//       again for SECONDS; thread i runs at nice i % 3. Then all meet at a barrier (the CPUs
//       are free again), read their schedstat and end. One line per worker:
//       worker tid=T nice=N cycles=C start_run_delay_ns=… start_pcount=… end_run_delay_ns=… end_pcount=…
//   wl-schedule alone ITERATIONS SLEEP_US [fifo]
//       One thread sleeps SLEEP_US and does a few µs of work, ITERATIONS times; with "fifo" it
//       runs SCHED_FIFO priority 10 (ahead of every normal thread). One line:
//       alone tid=T policy=P iterations=I start_run_delay_ns=… start_pcount=… end_run_delay_ns=… end_pcount=…
//   wl-schedule busy CPU BURSTS BURST_MS GAP_MS
//       Pinned to CPU, BURSTS times: keep the CPU busy for BURST_MS of wall time, then sleep
//       GAP_MS. One line: busy tid=T cpu=C bursts=B shortest_burst_ns=… longest_burst_ns=…
//
// The first line is always pid=P.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct schedstat {
	unsigned long long oncpu_ns, run_delay_ns, pcount;
};

static int read_schedstat(struct schedstat *s)
{
	FILE *f = fopen("/proc/thread-self/schedstat", "r");
	if (!f)
		return -1;
	int n = fscanf(f, "%llu %llu %llu", &s->oncpu_ns, &s->run_delay_ns, &s->pcount);
	fclose(f);
	return n == 3 ? 0 : -1;
}

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ULL), .tv_nsec = (long)(ns % 1000000000ULL)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static void die(const char *what)
{
	fprintf(stderr, "wl-schedule: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---------------------------------------------------------------- contend */

struct worker {
	pthread_t th;
	int index;
	pid_t tid;
	int nice;
	long cycles;
	uint64_t deadline_ns;
	struct schedstat start, end;
};

static pthread_barrier_t done_barrier;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->tid = (pid_t)syscall(SYS_gettid);
	if (read_schedstat(&w->start) != 0)
		die("read schedstat");
	w->nice = w->index % 3;
	if (setpriority(PRIO_PROCESS, (id_t)w->tid, w->nice) != 0)
		die("setpriority");
	while (clock_ns(CLOCK_MONOTONIC) < w->deadline_ns) {
		uint64_t until = clock_ns(CLOCK_THREAD_CPUTIME_ID) + 2000000ULL;
		while (clock_ns(CLOCK_THREAD_CPUTIME_ID) < until) {
		}
		sleep_ns(1000000ULL);
		w->cycles++;
	}
	pthread_barrier_wait(&done_barrier);
	if (read_schedstat(&w->end) != 0)
		die("read schedstat");
	return NULL;
}

static int contend(int workers, int seconds)
{
	struct worker *ws = calloc((size_t)workers, sizeof *ws);
	if (!ws)
		die("calloc");
	pthread_barrier_init(&done_barrier, NULL, (unsigned)workers);
	uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + (uint64_t)seconds * 1000000000ULL;
	for (int i = 0; i < workers; i++) {
		ws[i].index = i;
		ws[i].deadline_ns = deadline;
		if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0)
			die("pthread_create");
	}
	for (int i = 0; i < workers; i++)
		pthread_join(ws[i].th, NULL);
	for (int i = 0; i < workers; i++) {
		struct worker *w = &ws[i];
		printf("worker tid=%d nice=%d cycles=%ld start_run_delay_ns=%llu start_pcount=%llu "
		       "end_run_delay_ns=%llu end_pcount=%llu\n",
		       w->tid, w->nice, w->cycles, w->start.run_delay_ns, w->start.pcount, w->end.run_delay_ns,
		       w->end.pcount);
	}
	free(ws);
	return 0;
}

/* ---------------------------------------------------------------- alone */

struct alone_args {
	long iterations;
	uint64_t sleep_ns;
	int fifo;
	pid_t tid;
	struct schedstat start, end;
};

static void *alone_main(void *arg)
{
	struct alone_args *a = arg;
	a->tid = (pid_t)syscall(SYS_gettid);
	if (a->fifo) {
		struct sched_param sp = {.sched_priority = 10};
		if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0)
			die("sched_setscheduler SCHED_FIFO");
	}
	if (read_schedstat(&a->start) != 0)
		die("read schedstat");
	for (long i = 0; i < a->iterations; i++) {
		sleep_ns(a->sleep_ns);
		uint64_t until = clock_ns(CLOCK_MONOTONIC) + 5000; /* a few µs of work */
		while (clock_ns(CLOCK_MONOTONIC) < until) {
		}
	}
	if (read_schedstat(&a->end) != 0)
		die("read schedstat");
	return NULL;
}

static int alone(long iterations, long sleep_us, int fifo)
{
	struct alone_args a = {.iterations = iterations, .sleep_ns = (uint64_t)sleep_us * 1000ULL, .fifo = fifo};
	pthread_t th;
	if (pthread_create(&th, NULL, alone_main, &a) != 0)
		die("pthread_create");
	pthread_join(th, NULL);
	printf("alone tid=%d policy=%s iterations=%ld start_run_delay_ns=%llu start_pcount=%llu "
	       "end_run_delay_ns=%llu end_pcount=%llu\n",
	       a.tid, fifo ? "fifo" : "normal", iterations, a.start.run_delay_ns, a.start.pcount, a.end.run_delay_ns,
	       a.end.pcount);
	return 0;
}

/* ---------------------------------------------------------------- busy */

static int busy(int cpu, int bursts, long burst_ms, long gap_ms)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set) != 0)
		die("sched_setaffinity");
	sleep_ns(1000000ULL); /* now running on that CPU */
	uint64_t shortest = UINT64_MAX, longest = 0;
	for (int i = 0; i < bursts; i++) {
		uint64_t t0 = clock_ns(CLOCK_MONOTONIC), t1;
		do
			t1 = clock_ns(CLOCK_MONOTONIC);
		while (t1 - t0 < (uint64_t)burst_ms * 1000000ULL);
		if (t1 - t0 < shortest)
			shortest = t1 - t0;
		if (t1 - t0 > longest)
			longest = t1 - t0;
		sleep_ns((uint64_t)gap_ms * 1000000ULL);
	}
	printf("busy tid=%ld cpu=%d bursts=%d shortest_burst_ns=%llu longest_burst_ns=%llu\n", (long)syscall(SYS_gettid),
	       cpu, bursts, (unsigned long long)shortest, (unsigned long long)longest);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("pid=%d\n", getpid());
	if (argc >= 4 && strcmp(argv[1], "contend") == 0)
		return contend(atoi(argv[2]), atoi(argv[3]));
	if (argc >= 4 && strcmp(argv[1], "alone") == 0)
		return alone(atol(argv[2]), atol(argv[3]), argc >= 5 && strcmp(argv[4], "fifo") == 0);
	if (argc >= 6 && strcmp(argv[1], "busy") == 0)
		return busy(atoi(argv[2]), atoi(argv[3]), atol(argv[4]), atol(argv[5]));
	fprintf(stderr, "usage: wl-schedule contend WORKERS SECONDS | alone ITERATIONS SLEEP_US [fifo] | "
			"busy CPU BURSTS BURST_MS GAP_MS\n");
	return 2;
}
