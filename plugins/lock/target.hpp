// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: what it learns about a target process before attaching to it: the
// lock functions in its libc's ELF symbols, the libraries it maps, where an entry probe costs
// least, a uprobe_multi link for one process, and the process's state in /proc.
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace procimage::lock {

// What elf_function_offsets() learns besides the offsets.
struct elf_extra {
	std::map<std::string, uint64_t> sizes; // st_size of the symbols found (0: unknown)
	bool x86_64 = false;
};

// File offsets of the named functions defined in an ELF file. For a name with several
// versions (pthread_cond_wait@GLIBC_2.2.5 and @@GLIBC_2.3.2), the default version wins: that
// is what a program linked today calls.
std::map<std::string, uint64_t> elf_function_offsets(const std::string &path, const std::set<std::string> &names,
						    elf_extra *extra = nullptr);

struct mapped_lib {
	std::string path;      // as the process sees it
	std::string open_path; // how procimage reaches the same file
	uint64_t dev = 0, ino = 0;
	bool pthread = false;  // libpthread (glibc before 2.34), else libc
};

bool is_libc_name(const std::string &base, bool &pthread);
// libc and libpthread as mapped by a process; nullopt when the process is gone.
std::optional<std::vector<mapped_lib>> process_libs(uint32_t pid);

constexpr uint32_t BPF_TRACE_UPROBE_MULTI_ = 48; // enum bpf_attach_type, Linux 6.6

// One uprobe_multi link: prog at every offset of path, for process pid only. Returns the link
// fd or -errno.
int attach_multi(bpf_program *prog, const std::string &path, uint32_t pid, const std::vector<uint64_t> &offsets,
		 const std::vector<uint64_t> &cookies, bool ret);

uint32_t tgid_of(uint32_t tid);
std::string proc_comm(uint32_t pid);

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
