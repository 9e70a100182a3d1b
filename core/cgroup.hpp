// SPDX-License-Identifier: Apache-2.0
//
// The cgroup v2 (unified) hierarchy seen from user space: where it is mounted, which directory
// a --cgroup path, a systemd --unit or a --container id names, the cgroup id the kernel gives
// that directory, and the v2 cgroup of a process. Every search takes its root directory as a
// parameter, so a fake tree can stand in for the real one.
#pragma once

#include "result.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace procimage::core::cgroup {

// A cgroup v2 mount: where it is, and which cgroup of the hierarchy it shows at that place
// ("/" normally; a cgroup below the root when mounted from inside a cgroup namespace, or
// bind-mounted).
struct mount {
	std::string path; // e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified
	std::string root; // mountinfo's root field
};

// The first cgroup2 file system in a mountinfo file (/proc/self/mountinfo by default),
// preferring one that shows the whole hierarchy (root "/").
std::optional<mount> find_v2_mount(const std::string &mountinfo = "/proc/self/mountinfo");
// The same, or a usage error saying there is none.
result<mount> v2_mount(const std::string &mountinfo = "/proc/self/mountinfo");

// When this process sees only part of the hierarchy: a cgroup namespace of its own (its
// /proc/self/ns/cgroup differs from PID 1's, with the host's PID namespace), or a mount whose
// top is not the hierarchy's root (cgroup id 1). Then cgroups outside that part can neither be
// targeted nor named in records. The text says so and how to run in the host's namespace;
// nullopt when the whole hierarchy is visible.
std::optional<std::string> partial_view(const mount &m, const std::string &proc = "/proc");

// Every directory below root (root itself excluded), symlinks not followed. A directory that
// disappears during the walk is skipped.
void for_each_dir(const std::string &root, const std::function<void(const std::filesystem::path &)> &each);

// A resolved cgroup target.
struct dir {
	std::string path;       // absolute directory, normalized, under the mount
	std::string rel;        // the same relative to the hierarchy's root as mountinfo shows it: "/system.slice/x.service"
	uint64_t id = 0;        // the kernel's cgroup id (kernfs node id)
	uint32_t min_level = 0; // its depth below the hierarchy's root as far as the mount shows it
};

// PATH absolute, or relative to the mount: an existing cgroup v2 directory below (or at) the
// mount, else a usage error naming what is wrong.
result<dir> resolve_path(const mount &m, const std::string &path);

// The cgroup directory of a systemd unit under root: a directory named NAME when NAME ends in
// a unit suffix (.service, .scope, .slice), else NAME.service, NAME.scope or NAME.slice.
// Exactly one must match (system and user managers alike: user@UID.service/app.slice/...).
result<std::string> find_unit(const std::string &root, const std::string &name);

// The cgroup directory of a container under root whose id starts with prefix (hex): docker
// (docker-ID.scope, docker/ID), containerd / CRI (cri-containerd-ID.scope), CRI-O (crio-ID.scope)
// and podman (libpod-ID.scope). Exactly one container must match.
result<std::string> find_container(const std::string &root, const std::string &prefix);

// The kernel's id of a cgroup directory (what bpf_get_current_cgroup_id() returns for a task
// in it); nullopt with errno set when it cannot be read.
std::optional<uint64_t> cgroup_id(const std::string &path);

// A process's v2 cgroup as /proc/PID/cgroup gives it ("/system.slice/cron.service", relative
// to the hierarchy's root as this process's cgroup namespace shows it); nullopt when the
// process is gone or has no v2 line.
std::optional<std::string> pid_cgroup(uint32_t pid, const std::string &proc = "/proc");
// The directory of that cgroup under the mount m; nullopt when the mount does not show it.
std::optional<std::string> pid_cgroup_dir(uint32_t pid, const mount &m, const std::string &proc = "/proc");

} // namespace procimage::core::cgroup
