// SPDX-License-Identifier: Apache-2.0
//
// prometheus sink: run time and run count of this process's BPF programs (config bpf_stats).
// The kernel counts them only while BPF statistics are enabled. We enable them with the
// BPF_ENABLE_STATS command rather than by writing kernel.bpf_stats_enabled: the kernel keeps
// them on while the returned descriptor is open and counts every holder, so closing it at
// shutdown (or the kernel closing it if procimage dies) restores the previous state without
// overriding anyone else who enabled them.
#pragma once

#include "exporter.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <dirent.h>
#include <unistd.h>

namespace procimage::sinks::prom {

class bpf_stats {
public:
	bpf_stats() = default;
	bpf_stats(const bpf_stats &) = delete;
	bpf_stats &operator=(const bpf_stats &) = delete;
	~bpf_stats() { disable(); }

	void enable()
	{
		if (fd_ >= 0)
			return;
		int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
		if (fd < 0)
			throw std::runtime_error(std::string("bpf_stats: cannot enable the kernel's BPF statistics: ") +
						 std::strerror(errno));
		fd_ = fd;
	}
	void disable()
	{
		if (fd_ >= 0)
			close(fd_);
		fd_ = -1;
	}
	bool enabled() const { return fd_ >= 0; }

	// Every BPF program this process holds a descriptor of (the host's and the probes').
	static std::vector<bpf_prog_stats> read()
	{
		std::vector<bpf_prog_stats> out;
		DIR *d = opendir("/proc/self/fd");
		if (!d)
			return out;
		std::vector<int> fds;
		while (dirent *e = readdir(d)) {
			char *end = nullptr;
			long fd = std::strtol(e->d_name, &end, 10);
			if (end == e->d_name || *end || fd < 0 || fd == dirfd(d))
				continue;
			char link[64] = "";
			std::string path = std::string("/proc/self/fd/") + e->d_name;
			ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
			if (n > 0 && std::string_view(link, static_cast<size_t>(n)) == "anon_inode:bpf-prog")
				fds.push_back(static_cast<int>(fd));
		}
		closedir(d);
		std::vector<uint32_t> seen;
		for (int fd : fds) {
			bpf_prog_info info{};
			uint32_t len = sizeof info;
			if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
				continue; // closed meanwhile
			if (std::find(seen.begin(), seen.end(), info.id) != seen.end())
				continue; // the same program through two descriptors
			seen.push_back(info.id);
			bpf_prog_stats p;
			p.name.assign(info.name, strnlen(info.name, sizeof info.name));
			p.id = info.id;
			p.run_time_ns = info.run_time_ns;
			p.run_cnt = info.run_cnt;
			out.push_back(std::move(p));
		}
		std::sort(out.begin(), out.end(), [](const auto &a, const auto &b) { return a.id < b.id; });
		return out;
	}

private:
	int fd_ = -1;
};

} // namespace procimage::sinks::prom
