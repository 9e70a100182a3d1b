// SPDX-License-Identifier: Apache-2.0
//
// resource probe: the whole system's reference figures, from the kernel's own text files.
//  /proc/stat       CPU time per state, whole system and per CPU (USER_HZ ticks: 10 ms on
//                   nearly every build), for the system's CPU % and an idle target's idle %
//  /proc/meminfo    MemTotal and MemAvailable: memory used = total - available
//  /proc/diskstats  sectors (512 bytes, whatever the device's block size) read and written by
//                   whole physical disks (those with a /sys/block/<name>/device link), so
//                   partitions, device-mapper and md devices are not counted twice, and loop,
//                   ram and zram devices (memory, not storage) not at all
// The parsers take the text, so the unit tests feed them canned files.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <dirent.h>
#include <unistd.h>

namespace procimage::resource {

struct cpu_times {
	// ticks per state, in /proc/stat's order (guest time is already inside user / nice)
	uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
	uint64_t total() const { return user + nice + system + idle + iowait + irq + softirq + steal; }
	uint64_t idle_all() const { return idle + iowait; } // the idle task's time
	uint64_t busy() const { return total() - idle_all(); }
};

struct proc_stat {
	cpu_times all;
	std::map<int, cpu_times> cpus; // online CPUs only
};

inline proc_stat parse_proc_stat(const std::string &text)
{
	proc_stat s;
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line)) {
		if (line.compare(0, 3, "cpu") != 0)
			continue;
		std::istringstream ls(line);
		std::string name;
		cpu_times t;
		ls >> name >> t.user >> t.nice >> t.system >> t.idle >> t.iowait >> t.irq >> t.softirq >> t.steal;
		if (name == "cpu")
			s.all = t;
		else
			s.cpus[std::stoi(name.substr(3))] = t;
	}
	return s;
}

struct meminfo {
	uint64_t total = 0;     // bytes
	uint64_t available = 0; // bytes
	uint64_t used() const { return total > available ? total - available : 0; }
};

inline meminfo parse_meminfo(const std::string &text)
{
	meminfo m;
	std::istringstream in(text);
	std::string key, unit;
	uint64_t v;
	while (in >> key >> v) {
		std::getline(in, unit);
		if (key == "MemTotal:")
			m.total = v * 1024;
		else if (key == "MemAvailable:")
			m.available = v * 1024;
	}
	return m;
}

struct disk_bytes {
	uint64_t read = 0, written = 0;
};

// Sum over the named devices (whole disks). Fields 6 and 10 are sectors read / written.
inline disk_bytes parse_diskstats(const std::string &text, const std::set<std::string> &devices)
{
	disk_bytes d;
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream ls(line);
		unsigned major, minor;
		std::string name;
		uint64_t f[7] = {};
		if (!(ls >> major >> minor >> name))
			continue;
		for (auto &x : f)
			ls >> x;
		if (!devices.count(name))
			continue;
		d.read += f[2] * 512;
		d.written += f[6] * 512;
	}
	return d;
}

inline std::string slurp(const std::string &path)
{
	std::ifstream in(path);
	std::ostringstream o;
	o << in.rdbuf();
	return o.str();
}

// Whole physical disks: /sys/block entries backed by a device.
inline std::set<std::string> physical_disks(const std::string &sys_block = "/sys/block")
{
	std::set<std::string> out;
	DIR *d = opendir(sys_block.c_str());
	if (!d)
		return out;
	while (dirent *e = readdir(d)) {
		if (e->d_name[0] == '.')
			continue;
		std::string dev = sys_block + "/" + e->d_name + "/device";
		if (access(dev.c_str(), F_OK) == 0)
			out.insert(e->d_name);
	}
	closedir(d);
	return out;
}

struct system_sample {
	uint64_t ts = 0; // boot ns
	proc_stat stat;
	meminfo mem;
	disk_bytes disk;
};

inline double pct(uint64_t part, uint64_t whole) { return whole ? 100.0 * part / whole : 0.0; }

inline uint64_t diff(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

inline cpu_times diff(const cpu_times &a, const cpu_times &b)
{
	cpu_times d;
	d.user = diff(a.user, b.user);
	d.nice = diff(a.nice, b.nice);
	d.system = diff(a.system, b.system);
	d.idle = diff(a.idle, b.idle);
	d.iowait = diff(a.iowait, b.iowait);
	d.irq = diff(a.irq, b.irq);
	d.softirq = diff(a.softirq, b.softirq);
	d.steal = diff(a.steal, b.steal);
	return d;
}

} // namespace procimage::resource
