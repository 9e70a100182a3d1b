// SPDX-License-Identifier: Apache-2.0
// A freshly forked child calls execve on a path that does not exist, named by a string literal
// the child has never touched: fork copies no page-table entries of file-backed mappings, so
// the page holding the literal is not present in the child when execve starts. Prints
// "child=<pid> errno=<n>" and exits 0 when the exec failed with ENOENT.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	int fds[2];
	if (pipe(fds) != 0)
		return 2;
	pid_t p = fork();
	if (p < 0)
		return 2;
	if (p == 0) {
		char *const argv[] = {"/nonexistent/procimage-untouched-literal", "first-arg", NULL};
		execve("/nonexistent/procimage-untouched-literal", argv, NULL);
		int e = errno;
		if (write(fds[1], &e, sizeof e) != (ssize_t)sizeof e)
			_exit(3);
		_exit(0);
	}
	int e = 0, st = 0;
	if (read(fds[0], &e, sizeof e) != (ssize_t)sizeof e)
		return 2;
	waitpid(p, &st, 0);
	printf("child=%d errno=%d\n", (int)p, e);
	return e == ENOENT ? 0 : 1;
}
