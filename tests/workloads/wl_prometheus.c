// SPDX-License-Identifier: Apache-2.0
//
// Test workload of the prometheus sink: a little of everything the probes measure, in known
// amounts, then it holds still (no CPU, no system calls) until SIGUSR1 or SIGTERM, so that a
// Prometheus server can scrape the settled figures several times.
//
//   wl-prometheus      in this order:
//                        getppid x 20000           (through syscall(2): nothing substituted)
//                        ~300 ms of CPU time        (a busy loop on the main thread)
//                        two threads, each locking one pthread mutex 2000 times, with a short
//                        busy stretch inside (contention, futex waits, scheduling delays)
//                        fork: the child exits with status 3
//                        fork: the child pauses and is killed with SIGKILL
//                        fork: the child execs /bin/true
//                        one execve of a missing file (fails with ENOENT)
//                        then notes done=1 and waits for SIGUSR1 / SIGTERM, and exits 0
//
// When PROCIMAGE_WL_LOG names a file, key=value lines go there: pid, the counts above, the
// children's pids, and done=1 once everything happened.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { N_GETPPID = 20000, N_LOCKS = 2000, CPU_MS = 300 };

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static volatile uint64_t shared_counter;
static FILE *logf;

static void note(const char *key, long value)
{
	if (!logf)
		return;
	fprintf(logf, "%s=%ld\n", key, value);
	fflush(logf);
}

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void spin(int n)
{
	for (volatile int i = 0; i < n; i++)
		;
}

static void *locker(void *arg)
{
	(void)arg;
	for (int i = 0; i < N_LOCKS; i++) {
		pthread_mutex_lock(&mu);
		shared_counter++;
		spin(2000);
		pthread_mutex_unlock(&mu);
		spin(500);
	}
	return NULL;
}

int main(void)
{
	const char *path = getenv("PROCIMAGE_WL_LOG");
	if (path && *path) {
		logf = fopen(path, "w");
		if (!logf) {
			perror(path);
			return 2;
		}
	}
	// Signals we wait for are blocked first, so that none is lost before sigwait.
	sigset_t wait_set;
	sigemptyset(&wait_set);
	sigaddset(&wait_set, SIGUSR1);
	sigaddset(&wait_set, SIGTERM);
	sigprocmask(SIG_BLOCK, &wait_set, NULL);

	note("pid", (long)getpid());

	long ppid = 0;
	for (int i = 0; i < N_GETPPID; i++)
		ppid = syscall(SYS_getppid);
	note("ppid", ppid);
	note("getppid", N_GETPPID);

	int64_t t0 = thread_cpu_ns();
	while (thread_cpu_ns() - t0 < (int64_t)CPU_MS * 1000000)
		spin(10000);
	note("cpu_ms", CPU_MS);

	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, locker, NULL) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 2;
		}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	note("locks", (long)shared_counter);

	pid_t c = fork();
	if (c == 0)
		_exit(3);
	waitpid(c, NULL, 0);
	note("child_exit3", (long)c);

	c = fork();
	if (c == 0) {
		pause();
		_exit(0);
	}
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	note("child_killed", (long)c);

	c = fork();
	if (c == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	waitpid(c, NULL, 0);
	note("child_true", (long)c);

	char *argv[] = {"missing", NULL};
	execv("/nonexistent/procimage-wl-missing", argv);
	note("exec_errno", (long)errno);

	note("done", 1);
	int sig = 0;
	sigwait(&wait_set, &sig);
	if (logf)
		fclose(logf);
	return 0;
}
