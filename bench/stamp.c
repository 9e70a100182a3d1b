// SPDX-License-Identifier: Apache-2.0
// bench helper: clock stamps and the CPU time of a tool that is not its children's.
//
//   stamp now FILE        append CLOCK_MONOTONIC (s, ns precision) to FILE and exit: the
//                         command a tool traces, so that the wrapper knows when it ended
//   stamp run [-o LOG] -- CMD...
//                         run CMD (its output appended to LOG, or left alone), then print:
//                         "START END USER SYS" — monotonic seconds around CMD's start and
//                         the moment it was seen to exit, and CMD's own user and system CPU
//                         seconds (all its threads, its reaped children left out: read
//                         from /proc/PID/stat while CMD is still a zombie)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

// utime and stime (fields 14 and 15 of /proc/PID/stat), in seconds
static int own_cpu(pid_t pid, double *user, double *sys)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')'); // the name may hold spaces and parentheses
	if (!p)
		return -1;
	unsigned long long ut = 0, st = 0;
	// after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	*user = (double)ut / hz;
	*sys = (double)st / hz;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "now") == 0) {
		FILE *f = fopen(argv[2], "a");
		if (!f)
			return 1;
		fprintf(f, "%.9f\n", mono());
		return fclose(f) == 0 ? 0 : 1;
	}
	const char *log = NULL;
	int a = 2;
	if (argc > 3 && strcmp(argv[1], "run") == 0 && strcmp(argv[2], "-o") == 0) {
		log = argv[3];
		a = 4;
	}
	if (argc < a + 2 || strcmp(argv[1], "run") != 0 || strcmp(argv[a], "--") != 0) {
		fprintf(stderr, "usage: stamp now FILE | stamp run [-o LOG] -- CMD [ARGS...]\n");
		return 2;
	}
	char **cmd = argv + a + 1;
	double start = mono();
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		if (log) {
			int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
			if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
				_exit(126);
			close(fd);
		}
		execvp(cmd[0], cmd);
		fprintf(stderr, "stamp: %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	siginfo_t si;
	while (waitid(P_PID, pid, &si, WEXITED | WNOWAIT) != 0)
		if (errno != EINTR)
			return 1;
	double end = mono();
	double user = -1, sys = -1;
	own_cpu(pid, &user, &sys);
	int status;
	waitpid(pid, &status, 0);
	printf("%.9f %.9f %.3f %.3f\n", start, end, user, sys);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "stamp: %s ended with status 0x%x\n", cmd[0], status);
	return 0;
}
