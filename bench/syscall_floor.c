// SPDX-License-Identifier: Apache-2.0
// bench/syscall.sh's floor loader: loads syscall_floor.bpf.o (an empty raw_tp pair on
// sys_enter / sys_exit), attaches it, says "attached" on stderr and waits for SIGINT/SIGTERM.
// Usage: syscall_floor OBJECT
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s syscall_floor.bpf.o\n", argv[0]);
		return 2;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || bpf_object__load(obj)) {
		fprintf(stderr, "cannot load %s\n", argv[1]);
		return 1;
	}
	struct bpf_program *prog;
	int n = 0;
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__attach(prog)) {
			fprintf(stderr, "cannot attach %s\n", bpf_program__name(prog));
			return 1;
		}
		n++;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fprintf(stderr, "attached %d programs\n", n);
	while (!stop)
		pause();
	bpf_object__close(obj);
	return 0;
}
