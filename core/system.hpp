// SPDX-License-Identifier: Apache-2.0
//
// What the host needs from the system: privileges, pseudo-filesystems, clocks, the traced
// command.
#pragma once

#include "result.hpp"

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace procimage::core {

// Root, or CAP_BPF + CAP_PERFMON + CAP_DAC_READ_SEARCH (CAP_SYS_ADMIN also accepted). Fails with EXIT_PRIVILEGE.
result<void> check_privileges();

struct target_spec;
// The target's threads / processes exist now (a thread id must be a live thread, a process
// id a thread-group leader; CPU numbers must exist).
// A cgroup target must name an existing cgroup v2 directory (checked by resolving it).
result<void> check_target_exists(const target_spec &t);
// A cgroup target resolved on this machine: the v2 mount found, a path, unit or container
// turned into its directory, id and least depth (other targets are left as they are). A
// usage error (exit 2) when there is no v2 hierarchy or nothing, or more than one cgroup,
// matches.
result<void> resolve_cgroup_target(target_spec &t);

// Mount bpffs at /sys/fs/bpf and tracefs at /sys/kernel/tracing when they are missing.
result<void> ensure_mounts();

// Offset to add to a CLOCK_BOOTTIME ns value to get Unix epoch ns.
uint64_t boot_to_epoch_offset_ns();
uint64_t boot_now_ns();

// A command started stopped before exec: it runs only when release() is called, so the
// probes can target it before its first instruction.
class held_command {
public:
	held_command() = default;
	held_command(const held_command &) = delete;
	held_command &operator=(const held_command &) = delete;
	~held_command();

	result<void> start(const std::vector<std::string> &argv);
	result<void> release();
	// Reap without blocking; true once the command has exited.
	bool poll_exit();
	pid_t pid() const { return pid_; }
	bool exited() const { return exited_; }
	// Exit status as a shell reports it: the code, or 128 + signal.
	int shell_status() const { return shell_status_; }
	void kill_with(int sig);

private:
	pid_t pid_ = -1;
	int go_fd_ = -1;
	bool exited_ = false;
	int shell_status_ = 0;
};

} // namespace procimage::core
