// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: what /proc says of a target process: the libc (and libpthread) it
// maps and how procimage reaches that file, its name, its thread group, whether it still runs.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace procimage::lock {

struct mapped_lib {
	std::string path;      // as the process sees it
	std::string open_path; // how procimage reaches the same file
	uint64_t dev = 0, ino = 0;
	bool pthread = false;  // libpthread (glibc before 2.34), else libc
};

bool is_libc_name(const std::string &base, bool &pthread);
// libc and libpthread as mapped by a process; nullopt when the process is gone.
std::optional<std::vector<mapped_lib>> process_libs(uint32_t pid);

uint32_t tgid_of(uint32_t tid);
std::string proc_comm(uint32_t pid);

// The processes in a cgroup v2 directory and every cgroup below it (their cgroup.procs);
// nullopt, with errno set, when dir cannot be read.
std::optional<std::set<uint32_t>> cgroup_processes(const std::string &dir);

// What /proc/<pid>/stat says of a process: its state letter and its start time (field 22,
// clock ticks since boot; with the pid it names one process across pid reuse). nullopt when
// it is gone.
struct proc_stat {
	char state = 0;
	uint64_t start_ticks = 0;
};
std::optional<proc_stat> read_proc_stat(uint32_t pid);

// The process has exited (gone, a zombie, or past the release of its memory), or its pid now
// names another process (start_ticks given and different): there is nothing left to probe,
// and a failed attach to it is no error.
bool process_ended(uint32_t pid, uint64_t start_ticks = 0);

} // namespace procimage::lock
