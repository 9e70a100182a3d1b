// SPDX-License-Identifier: Apache-2.0
//
// The one place where the report reads the fields of a record. Every record name the report
// depends on is spelled here, so a schema rename touches this file only.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace procimage::report::fields {

using json = nlohmann::json;

inline std::optional<uint64_t> u64(const json &r, const char *key)
{
	auto it = r.find(key);
	if (it == r.end() || !it->is_number())
		return std::nullopt;
	if (it->is_number_float())
		return it->get<double>() < 0 ? 0 : static_cast<uint64_t>(it->get<double>());
	if (it->is_number_integer() && it->get<int64_t>() < 0)
		return 0;
	return it->get<uint64_t>();
}
inline std::optional<int64_t> i64(const json &r, const char *key)
{
	auto it = r.find(key);
	if (it == r.end() || !it->is_number())
		return std::nullopt;
	return it->get<int64_t>();
}
inline std::string str(const json &r, const char *key)
{
	auto it = r.find(key);
	return it != r.end() && it->is_string() ? it->get<std::string>() : std::string();
}
inline bool flag(const json &r, const char *key)
{
	auto it = r.find(key);
	return it != r.end() && it->is_boolean() && it->get<bool>();
}
// first of several spellings (a field renamed by a schema change)
inline std::optional<uint64_t> u64_any(const json &r, std::initializer_list<const char *> keys)
{
	for (auto k : keys)
		if (auto v = u64(r, k))
			return v;
	return std::nullopt;
}

inline std::string probe(const json &r) { return str(r, "probe"); }
inline std::string event(const json &r) { return str(r, "event"); }
inline uint64_t ts(const json &r) { return u64(r, "ts_ns").value_or(0); }
inline uint32_t pid(const json &r) { return static_cast<uint32_t>(u64(r, "pid").value_or(0)); }
inline uint32_t tid(const json &r) { return static_cast<uint32_t>(u64(r, "tid").value_or(0)); }
inline std::string comm(const json &r) { return str(r, "comm"); }
inline std::string cgroup(const json &r) { return str(r, "cgroup"); }
// profile's stack rows: samples and the two stacks, innermost frame first
inline std::optional<uint64_t> samples(const json &r) { return u64(r, "samples"); }
inline std::vector<std::string> frames(const json &r, const char *key)
{
	std::vector<std::string> v;
	auto it = r.find(key);
	if (it != r.end() && it->is_array())
		for (const auto &x : *it)
			if (x.is_string())
				v.push_back(x.get<std::string>());
	return v;
}
inline std::vector<std::string> ustack(const json &r) { return frames(r, "ustack"); }
inline std::vector<std::string> kstack(const json &r) { return frames(r, "kstack"); }
inline uint64_t pid_start(const json &r) { return u64(r, "pid_start_ns").value_or(0); }
inline std::optional<uint64_t> interval(const json &r) { return u64(r, "interval_ns"); }
inline std::optional<uint64_t> duration(const json &r) { return u64(r, "dur_ns"); }

// A periodic row about the whole machine (docs/events.md: `scope` is the one marker).
inline bool is_system(const json &r) { return str(r, "scope") == "system"; }
// Running totals of a periodic probe (figures since collection began, as opposed to one
// interval): the last one of an entity holds its whole-run figures.
inline bool is_total(const json &r) { return str(r, "window") == "total"; }

// keytime
inline std::optional<uint64_t> child_pid(const json &r) { return u64_any(r, {"child_pid", "child_tid", "new_pid"}); }
inline std::optional<uint64_t> child_start(const json &r) { return u64(r, "child_start_ns"); }
inline std::optional<int64_t> exit_code(const json &r) { return i64(r, "exit_code"); }
inline std::optional<int64_t> exit_signal(const json &r) { return i64(r, "signal"); }
inline bool core_dumped(const json &r) { return flag(r, "core_dumped"); }
inline bool group_dead(const json &r) { return flag(r, "group_dead"); }
inline std::optional<uint64_t> ppid(const json &r) { return u64(r, "ppid"); }
inline std::string filename(const json &r) { return str(r, "filename"); }
inline std::optional<int64_t> ret(const json &r) { return i64(r, "ret"); }
inline std::string offcpu_reason(const json &r)
{
	auto s = str(r, "reason");
	return s.empty() ? str(r, "state") : s;
}

// resource
inline std::optional<uint64_t> user_ns(const json &r) { return u64(r, "user_ns"); }
inline std::optional<uint64_t> system_ns(const json &r) { return u64(r, "system_ns"); }
inline std::optional<uint64_t> cpu_ns(const json &r) { return u64(r, "cpu_ns"); }
inline std::optional<uint64_t> cpu_total_ns(const json &r) { return u64(r, "cpu_total_ns"); }
inline std::optional<uint64_t> rss_bytes(const json &r) { return u64(r, "rss_bytes"); }
inline std::optional<uint64_t> read_bytes(const json &r) { return u64(r, "read_bytes"); }
inline std::optional<uint64_t> write_bytes(const json &r) { return u64(r, "write_bytes"); }
inline std::optional<uint64_t> read_total(const json &r) { return u64(r, "read_total_bytes"); }
inline std::optional<uint64_t> write_total(const json &r) { return u64(r, "write_total_bytes"); }
inline std::optional<double> cpu_pct(const json &r)
{
	auto it = r.find("cpu_pct");
	return it != r.end() && it->is_number() ? std::optional<double>(it->get<double>()) : std::nullopt;
}
inline std::optional<uint64_t> mem_used(const json &r) { return u64(r, "mem_used_bytes"); }

// schedule, syscall, lock: counted figures
inline std::optional<uint64_t> count(const json &r) { return u64(r, "count"); }
inline std::optional<uint64_t> total_ns(const json &r) { return u64(r, "total_ns"); }
inline std::optional<uint64_t> max_ns(const json &r) { return u64(r, "max_ns"); }
inline std::optional<uint64_t> errors(const json &r) { return u64(r, "errors"); }
inline std::string syscall_name(const json &r)
{
	auto s = str(r, "syscall");
	return s.empty() ? str(r, "name") : s;
}
inline std::vector<uint64_t> hist(const json &r)
{
	std::vector<uint64_t> v;
	if (auto it = r.find("hist_ns"); it != r.end() && it->is_array())
		for (auto &x : *it)
			v.push_back(x.is_number() ? x.get<uint64_t>() : 0);
	return v;
}
inline std::optional<uint64_t> sys_avg_ns(const json &r) { return u64(r, "sys_avg_ns"); }
inline std::optional<uint64_t> sys_max_ns(const json &r) { return u64(r, "sys_max_ns"); }

// lock
inline std::string lock_type(const json &r) { return str(r, "lock_type").empty() ? str(r, "type") : str(r, "lock_type"); }
inline std::string lock_name(const json &r)
{
	auto s = str(r, "lock_name");
	if (s.empty())
		if (auto a = u64(r, "lock_addr")) {
			char b[24];
			std::snprintf(b, sizeof b, "0x%llx", (unsigned long long)*a);
			s = b;
		}
	return s;
}
// seq: one syscall sequence (names and latencies, in call order)
inline std::vector<std::string> seq_names(const json &r)
{
	std::vector<std::string> v;
	if (auto it = r.find("syscalls"); it != r.end() && it->is_array())
		for (auto &x : *it)
			v.push_back(x.is_string() ? x.get<std::string>() : "?");
	return v;
}
inline std::vector<uint64_t> seq_lat(const json &r)
{
	std::vector<uint64_t> v;
	if (auto it = r.find("lat_ns"); it != r.end() && it->is_array())
		for (auto &x : *it)
			v.push_back(x.is_number_unsigned() ? x.get<uint64_t>() : 0);
	return v;
}
inline std::optional<uint64_t> acquisitions(const json &r) { return u64_any(r, {"acquisitions", "acquired", "count"}); }
inline std::optional<uint64_t> contended(const json &r) { return u64(r, "contended"); }
inline std::optional<uint64_t> wait_ns(const json &r) { return u64_any(r, {"wait_total_ns", "wait_ns", "wait_sum_ns"}); }
inline std::optional<uint64_t> wait_max_ns(const json &r) { return u64(r, "wait_max_ns"); }
inline std::optional<uint64_t> hold_ns(const json &r) { return u64_any(r, {"hold_total_ns", "hold_ns", "hold_sum_ns"}); }
inline std::optional<uint64_t> hold_max_ns(const json &r) { return u64(r, "hold_max_ns"); }

// host
inline std::optional<uint64_t> lost(const json &r) { return u64_any(r, {"lost_total", "lost"}); }
inline std::string source(const json &r) { return str(r, "source"); }

} // namespace procimage::report::fields
