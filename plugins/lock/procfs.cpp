// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: what /proc says of a target process (see procfs.hpp).
#include "procfs.hpp"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace procimage::lock {

bool is_libc_name(const std::string &base, bool &pthread)
{
	pthread = base.rfind("libpthread.so", 0) == 0 || base.rfind("libpthread-", 0) == 0;
	return pthread || base.rfind("libc.so", 0) == 0 || base.rfind("libc-2.", 0) == 0 ||
	       base.rfind("libc.musl", 0) == 0 || base.rfind("ld-musl", 0) == 0;
}

// libc and libpthread as mapped by a process; nullopt when the process is gone.
std::optional<std::vector<mapped_lib>> process_libs(uint32_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
	if (!in)
		return std::nullopt;
	std::vector<mapped_lib> libs;
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream ls(line);
		std::string range, perms, off, dev, path;
		uint64_t ino = 0;
		if (!(ls >> range >> perms >> off >> dev >> ino))
			continue;
		std::getline(ls, path);
		path.erase(0, path.find_first_not_of(' '));
		if (path.empty() || path[0] != '/' || ino == 0)
			continue;
		bool deleted = false;
		const std::string del = " (deleted)";
		if (path.size() > del.size() && path.compare(path.size() - del.size(), del.size(), del) == 0) {
			path.resize(path.size() - del.size());
			deleted = true;
		}
		std::string base = path.substr(path.rfind('/') + 1);
		bool pthread = false;
		if (!is_libc_name(base, pthread))
			continue;
		unsigned maj = 0, min = 0;
		std::sscanf(dev.c_str(), "%x:%x", &maj, &min);
		uint64_t devno = (static_cast<uint64_t>(maj) << 32) | min;
		if (std::any_of(libs.begin(), libs.end(), [&](const mapped_lib &l) { return l.ino == ino && l.dev == devno; }))
			continue;
		mapped_lib l;
		l.path = path;
		// the file as the process sees it (its own mount namespace), or the mapping itself when
		// the file was replaced since
		l.open_path = deleted ? "/proc/" + std::to_string(pid) + "/map_files/" + range
				      : "/proc/" + std::to_string(pid) + "/root" + path;
		l.dev = devno;
		l.ino = ino;
		l.pthread = pthread;
		libs.push_back(l);
	}
	return libs;
}


uint32_t tgid_of(uint32_t tid)
{
	std::ifstream in("/proc/" + std::to_string(tid) + "/status");
	std::string line;
	while (std::getline(in, line))
		if (line.rfind("Tgid:", 0) == 0)
			return static_cast<uint32_t>(std::stoul(line.substr(5)));
	return 0;
}

std::optional<std::set<uint32_t>> cgroup_processes(const std::string &dir)
{
	std::set<uint32_t> out;
	std::error_code ec;
	std::filesystem::recursive_directory_iterator it(dir, ec), end;
	if (ec) {
		errno = ec.value();
		return std::nullopt;
	}
	auto read_procs = [&](const std::filesystem::path &d) {
		std::ifstream in(d / "cgroup.procs");
		uint32_t pid;
		while (in >> pid)
			if (pid)
				out.insert(pid);
	};
	read_procs(dir);
	// cgroups below may come and go while they are read: what cannot be read is skipped
	for (; it != end; it.increment(ec)) {
		if (ec)
			break;
		if (it->is_directory(ec) && !it->is_symlink(ec))
			read_procs(it->path());
	}
	return out;
}

std::string proc_comm(uint32_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
	std::string s;
	std::getline(in, s);
	return s;
}

// What /proc/<pid>/stat says of a process: its state letter and its start time (field 22,
// clock ticks since boot; with the pid it names one process across pid reuse). nullopt when
// it is gone.
std::optional<proc_stat> read_proc_stat(uint32_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	std::string line;
	if (!std::getline(in, line))
		return std::nullopt;
	auto paren = line.rfind(')');
	if (paren == std::string::npos || paren + 2 >= line.size())
		return std::nullopt;
	proc_stat ps;
	ps.state = line[paren + 2];
	std::istringstream rest(line.substr(paren + 2));
	std::string field;
	for (int i = 3; i <= 22 && rest >> field; i++)
		if (i == 22)
			ps.start_ticks = std::strtoull(field.c_str(), nullptr, 10);
	return ps;
}

// The process has exited (gone, a zombie, or past the release of its memory), or its pid now
// names another process (start_ticks given and different): there is nothing left to probe,
// and a failed attach to it is no error.
bool process_ended(uint32_t pid, uint64_t start_ticks)
{
	auto ps = read_proc_stat(pid);
	if (!ps || ps->state == 'Z' || ps->state == 'X' || (start_ticks && ps->start_ticks != start_ticks))
		return true;
	std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
	return maps.peek() == std::ifstream::traits_type::eof();
}

} // namespace procimage::lock
