// SPDX-License-Identifier: Apache-2.0
// bench workload: N getppid system calls in a loop (through syscall(2): nothing cached by the
// C library). Prints the CPU time the loop's thread used, in seconds: the calls, and whatever
// a tool's programs add to them, run on that thread, while time spent waiting for a CPU taken
// by the machine's other work is not counted (wall time on a shared machine is).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double cpu_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 2000000;
	double a = cpu_s();
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	printf("%.6f\n", cpu_s() - a);
	return 0;
}
