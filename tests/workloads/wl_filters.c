// SPDX-License-Identifier: Apache-2.0
//
// Test workload of the filters (--comm, --failed): two children under names of their own, one
// that fails and one that does not.
//
//   wl-filters    forks two children and waits for both, then exits 0:
//                   "wlf-alpha" (prctl PR_SET_NAME): getppid x 100, openat of a missing file
//                               x 3 (-ENOENT), one failed execve (-ENOENT), exit 3
//                   "wlf-beta": getppid x 100, openat of /dev/null x 3 (succeed), exit 0
//
// When PROCIMAGE_WL_LOG names a file, the parent writes key=value lines there at the end: its
// pid, each child's pid and exit status, and the errno of the failed exec.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { N_GETPPID = 100, N_OPEN = 3 };

static int child(const char *name, int fail, int pipe_w)
{
	if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0)
		return 2;
	for (int i = 0; i < N_GETPPID; i++)
		syscall(SYS_getppid);
	const char *path = fail ? "/nonexistent/procimage-wl-filters" : "/dev/null";
	for (int i = 0; i < N_OPEN; i++) {
		long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
		if ((fd >= 0) == fail)
			return 2;
		if (fd >= 0)
			close((int)fd);
	}
	if (fail) {
		char *const argv[] = {"/nonexistent/procimage-wl-filters-exec", NULL};
		execve(argv[0], argv, NULL);
		int e = errno;
		if (write(pipe_w, &e, sizeof e) != (ssize_t)sizeof e)
			return 2;
		return 3;
	}
	return 0;
}

int main(void)
{
	int fds[2];
	if (pipe(fds) != 0)
		return 2;
	pid_t a = fork();
	if (a == 0)
		_exit(child("wlf-alpha", 1, fds[1]));
	pid_t b = fork();
	if (b == 0)
		_exit(child("wlf-beta", 0, fds[1]));
	if (a < 0 || b < 0)
		return 2;
	int sa = 0, sb = 0, exec_errno = 0;
	waitpid(a, &sa, 0);
	waitpid(b, &sb, 0);
	if (read(fds[0], &exec_errno, sizeof exec_errno) != (ssize_t)sizeof exec_errno)
		return 2;
	const char *log = getenv("PROCIMAGE_WL_LOG");
	if (log) {
		FILE *f = fopen(log, "w");
		if (!f)
			return 2;
		fprintf(f, "pid=%d\nalpha_pid=%d\nalpha_status=%d\nbeta_pid=%d\nbeta_status=%d\nexec_errno=%d\n"
			   "getppid=%d\nopen=%d\n",
			(int)getpid(), (int)a, WIFEXITED(sa) ? WEXITSTATUS(sa) : -1, (int)b,
			WIFEXITED(sb) ? WEXITSTATUS(sb) : -1, exec_errno, N_GETPPID, N_OPEN);
		fclose(f);
	}
	return 0;
}
