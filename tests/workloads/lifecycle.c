// SPDX-License-Identifier: Apache-2.0
/*
 * procimage-demo: a process whose life has every key time point keytime reports.
 *
 *   1. forks a child that exits with status 7
 *   2. vforks a child that execs /bin/true
 *   3. tries to exec a program that does not exist (fails with ENOENT)
 *   4. starts two threads and joins them
 *   5. forks a child that is killed by SIGKILL
 *   6. forks a child with a second thread that calls exit(5) (exit_group takes both threads)
 *   7. exits with status 3
 *
 * It writes what it did as key=value lines to the file named by $PROCIMAGE_DEMO_LOG (or to
 * stderr), so tests can compare procimage's records with the truth.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static FILE *logf_;

static void note(const char *key, long value)
{
	fprintf(logf_, "%s=%ld\n", key, value);
	fflush(logf_);
}

static void *thread_main(void *arg)
{
	note((const char *)arg, (long)syscall(SYS_gettid));
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	return NULL;
}

static int group_pipe = -1;

static void *sleeper(void *arg)
{
	(void)arg;
	long tid = (long)syscall(SYS_gettid);
	ssize_t w = write(group_pipe, &tid, sizeof tid);
	(void)w;
	for (;;)
		pause();
	return NULL;
}

static void wait_for(pid_t pid, const char *what)
{
	int st = 0;
	if (waitpid(pid, &st, 0) != pid) {
		perror("waitpid");
		exit(100);
	}
	if (WIFEXITED(st))
		note(what, WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		note(what, 128 + WTERMSIG(st));
}

int main(void)
{
	const char *path = getenv("PROCIMAGE_DEMO_LOG");
	logf_ = path ? fopen(path, "w") : stderr;
	if (!logf_) {
		perror(path);
		return 101;
	}
	note("pid", getpid());

	/* 1. fork, child exits 7 */
	pid_t c = fork();
	if (c == 0)
		_exit(7);
	note("fork_child", c);
	wait_for(c, "fork_child_status");

	/* 2. vfork + exec */
	char *const true_argv[] = {"/bin/true", "demo-arg", NULL};
	c = vfork();
	if (c == 0) {
		execv(true_argv[0], true_argv);
		_exit(127);
	}
	note("vfork_child", c);
	wait_for(c, "vfork_child_status");

	/* 3. failed exec in this very process */
	char *const bad_argv[] = {"/nonexistent/procimage-missing", "x", NULL};
	execv(bad_argv[0], bad_argv);
	note("failed_exec_errno", errno);

	/* 4. two threads */
	pthread_t t1, t2;
	pthread_create(&t1, NULL, thread_main, "thread1_tid");
	pthread_create(&t2, NULL, thread_main, "thread2_tid");
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);

	/* 5. a child killed by SIGKILL */
	c = fork();
	if (c == 0) {
		for (;;)
			pause();
	}
	note("killed_child", c);
	struct timespec ts = {0, 10 * 1000 * 1000};
	nanosleep(&ts, NULL);
	kill(c, SIGKILL);
	wait_for(c, "killed_child_status");

	/* 6. exit_group from a two-thread child: its second thread reports its id, then the
	 *    child's main thread calls exit(5) and the kernel ends both threads */
	int fds[2], go[2];
	if (pipe(fds) != 0 || pipe(go) != 0)
		return 102;
	group_pipe = fds[1];
	c = fork();
	if (c == 0) {
		pthread_t t;
		pthread_create(&t, NULL, sleeper, NULL);
		char x;
		if (read(go[0], &x, 1) != 1) /* the parent has noted the thread */
			_exit(103);
		exit(5);
	}
	long group_tid = 0;
	if (read(fds[0], &group_tid, sizeof group_tid) != sizeof group_tid)
		return 104;
	note("group_child", c);
	note("group_thread_tid", group_tid);
	ssize_t w = write(go[1], "g", 1); /* let the child's main thread exit */
	(void)w;
	wait_for(c, "group_child_status");

	note("exit_status", 3);
	if (logf_ != stderr)
		fclose(logf_);
	return 3;
}
