// SPDX-License-Identifier: Apache-2.0
//
// Test workload of the syscall probe: a worker thread makes a known sequence of system calls,
// each through syscall(2) so that the C library adds or substitutes nothing.
//
//   wl-syscall [counts]    the worker makes, in this order:
//                             openat /dev/zero, openat /dev/null        (2, succeed)
//                             getppid x 1000
//                             read x 256      (16 bytes from /dev/zero, each returns 16)
//                             write x 512     (8 bytes to /dev/null, each returns 8)
//                             openat x 5      (a missing file: -ENOENT)
//                             nanosleep 100 ms
//                             close x 2
//   wl-syscall block MS    the worker blocks in one read() on a pipe until the main thread
//                          writes to it, MS milliseconds later
//
// When PROCIMAGE_WL_LOG names a file, the main thread writes key=value lines there after the
// worker has ended: its pid, the worker's tid, getppid()'s value, what the worker did and how
// long the sleep or the blocked read took by the workload's own clock (CLOCK_MONOTONIC).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { N_GETPPID = 1000, N_READ = 256, N_WRITE = 512, N_BADOPEN = 5, READ_SIZE = 16, WRITE_SIZE = 8 };
#define SLEEP_NS 100000000L

static struct {
	long tid;
	long ppid;
	long bad_open_errno;
	long bad_read_ret;
	long bad_write_ret;
	int64_t sleep_ns;
	int64_t block_ns;
	long block_ms;
	int pipe_fd[2];
} w;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); // vDSO: no system call
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *counts(void *arg)
{
	(void)arg;
	char buf[64];
	w.tid = syscall(SYS_gettid);
	long zero = syscall(SYS_openat, AT_FDCWD, "/dev/zero", O_RDONLY | O_CLOEXEC);
	long null = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_WRONLY | O_CLOEXEC);
	if (zero < 0 || null < 0)
		abort();
	for (int i = 0; i < N_GETPPID; i++)
		w.ppid = syscall(SYS_getppid);
	for (int i = 0; i < N_READ; i++)
		if (syscall(SYS_read, zero, buf, READ_SIZE) != READ_SIZE)
			w.bad_read_ret++;
	memset(buf, 'x', sizeof buf);
	for (int i = 0; i < N_WRITE; i++)
		if (syscall(SYS_write, null, buf, WRITE_SIZE) != WRITE_SIZE)
			w.bad_write_ret++;
	for (int i = 0; i < N_BADOPEN; i++) {
		if (syscall(SYS_openat, AT_FDCWD, "/nonexistent/procimage-wl-syscall", O_RDONLY) != -1)
			abort();
		w.bad_open_errno = errno;
	}
	struct timespec req = {0, SLEEP_NS};
	int64_t t0 = now_ns();
	syscall(SYS_nanosleep, &req, NULL);
	w.sleep_ns = now_ns() - t0;
	syscall(SYS_close, zero);
	syscall(SYS_close, null);
	return NULL;
}

static void *block(void *arg)
{
	(void)arg;
	char c;
	w.tid = syscall(SYS_gettid);
	int64_t t0 = now_ns();
	if (syscall(SYS_read, w.pipe_fd[0], &c, 1) != 1)
		abort();
	w.block_ns = now_ns() - t0;
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "counts";
	pthread_t th;
	if (strcmp(mode, "counts") == 0) {
		if (pthread_create(&th, NULL, counts, NULL) != 0)
			return 1;
		pthread_join(th, NULL);
	} else if (strcmp(mode, "block") == 0 && argc > 2) {
		w.block_ms = atol(argv[2]);
		if (pipe(w.pipe_fd) != 0 || pthread_create(&th, NULL, block, NULL) != 0)
			return 1;
		struct timespec d = {w.block_ms / 1000, (w.block_ms % 1000) * 1000000L};
		nanosleep(&d, NULL);
		if (write(w.pipe_fd[1], "x", 1) != 1)
			return 1;
		pthread_join(th, NULL);
	} else {
		fprintf(stderr, "usage: wl-syscall [counts | block MS]\n");
		return 2;
	}
	const char *log = getenv("PROCIMAGE_WL_LOG");
	if (log) {
		FILE *f = fopen(log, "w");
		if (!f)
			return 1;
		fprintf(f, "pid=%ld\nworker_tid=%ld\n", (long)getpid(), w.tid);
		if (strcmp(mode, "counts") == 0)
			fprintf(f, "ppid=%ld\ngetppid=%d\nread=%d\nread_size=%d\nwrite=%d\nwrite_size=%d\n"
				   "bad_open=%d\nbad_open_errno=%ld\nbad_read_ret=%ld\nbad_write_ret=%ld\n"
				   "sleep_req_ns=%ld\nsleep_ns=%lld\n",
				w.ppid, N_GETPPID, N_READ, READ_SIZE, N_WRITE, WRITE_SIZE, N_BADOPEN,
				w.bad_open_errno, w.bad_read_ret, w.bad_write_ret, SLEEP_NS, (long long)w.sleep_ns);
		else
			fprintf(f, "block_ms=%ld\nblock_ns=%lld\n", w.block_ms, (long long)w.block_ns);
		fclose(f);
	}
	return 0;
}
