// SPDX-License-Identifier: Apache-2.0
#include "filters.hpp"

#include <procimage/bpf/common.h>

#include <seccomp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fnmatch.h>

namespace procimage::core {

using nlohmann::json;

namespace {

bool is_glob(const std::string &p)
{
	return p.find_first_of("*?[\\") != std::string::npos;
}

// The limit of a duration filter: a week, as --duration.
constexpr double MAX_MIN_DURATION_NS = 7.0 * 24 * 3600 * 1e9;

} // namespace

result<uint64_t> parse_duration_ns(const std::string &text, const std::string &what)
{
	const std::string want = what + ": expected a duration with its unit, ns, us, ms or s (e.g. 500us, 2ms, "
					"1.5s), at most a week, got '" + text + "'";
	size_t digits = text.find_first_not_of("0123456789.");
	if (digits == 0 || digits == std::string::npos)
		return usage_error(want);
	std::string unit = text.substr(digits);
	double scale;
	if (unit == "ns")
		scale = 1;
	else if (unit == "us")
		scale = 1e3;
	else if (unit == "ms")
		scale = 1e6;
	else if (unit == "s")
		scale = 1e9;
	else
		return usage_error(want);
	std::string num = text.substr(0, digits);
	if (std::count(num.begin(), num.end(), '.') > 1 || num == ".")
		return usage_error(want);
	char *end = nullptr;
	errno = 0;
	double v = std::strtod(num.c_str(), &end);
	if (errno != 0 || end != num.c_str() + num.size() || !(v >= 0))
		return usage_error(want);
	double ns = std::round(v * scale);
	if (ns > MAX_MIN_DURATION_NS)
		return usage_error(want);
	return static_cast<uint64_t>(ns);
}

result<void> check_comm_pattern(const std::string &p, const std::string &what)
{
	if (p.empty())
		return usage_error(what + ": expected a thread name or a pattern, got an empty one");
	if (p.find('\0') != std::string::npos)
		return usage_error(what + ": a thread name has no NUL byte");
	if (p.size() >= PI_FILTER_COMM_LEN)
		return usage_error(what + ": '" + p + "' is longer than " + std::to_string(PI_FILTER_COMM_LEN - 1) +
				   " bytes");
	if (!is_glob(p) && p.size() >= PI_COMM_LEN)
		return usage_error(what + ": '" + p + "' is longer than a thread name (the kernel keeps " +
				   std::to_string(PI_COMM_LEN - 1) + " bytes: give those, or end it with *)");
	return {};
}

result<void> add_syscalls(filter_spec &f, const std::string &list, const std::string &what)
{
	size_t start = 0;
	for (;;) {
		size_t comma = list.find(',', start);
		std::string name = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
		if (name.empty())
			return usage_error(what + ": expected syscall names separated by commas, got '" + list + "'");
		int nr = seccomp_syscall_resolve_name_arch(seccomp_arch_native(), name.c_str());
		if (nr < 0)
			return usage_error(what + ": unknown system call '" + name + "' (on this architecture)");
		if (nr >= PI_FILTER_SYSCALLS)
			return usage_error(what + ": system call '" + name + "' has number " + std::to_string(nr) +
					   ", above what the syscall probe tells apart (" +
					   std::to_string(PI_FILTER_SYSCALLS - 1) + ")");
		f.syscalls.push_back(name);
		f.syscall_nrs.push_back(static_cast<uint32_t>(nr));
		if (comma == std::string::npos)
			return {};
		start = comma + 1;
	}
}

bool filter_spec::comm_matches(const char *name) const
{
	if (comm.empty())
		return true;
	for (const auto &p : comm) {
		if (is_glob(p) ? fnmatch(p.c_str(), name, 0) == 0 : p == name)
			return true;
	}
	return false;
}

bool filter_spec::comm_needs_host() const
{
	for (const auto &p : comm) {
		size_t fixed = p.find_first_of("*?[\\");
		if (fixed != std::string::npos && !(fixed == p.size() - 1 && p[fixed] == '*'))
			return true;
	}
	return false;
}

pi_filters filter_spec::to_abi() const
{
	pi_filters f{};
	f.size = sizeof f;
	for (size_t i = 0; i < comm.size() && i < PI_FILTER_COMMS; i++) {
		std::strncpy(f.comm[i], comm[i].c_str(), PI_FILTER_COMM_LEN - 1);
		if (is_glob(comm[i]))
			f.comm_glob |= 1u << i;
		f.n_comms++;
	}
	f.failed_only = failed ? 1 : 0;
	f.min_duration_ns = min_duration_ns;
	for (uint32_t nr : syscall_nrs) {
		if (nr >= PI_FILTER_SYSCALLS)
			continue;
		if (!(f.syscalls[nr / 64] & (1ULL << (nr % 64))))
			f.n_syscalls++;
		f.syscalls[nr / 64] |= 1ULL << (nr % 64);
	}
	return f;
}

json filter_spec::to_json() const
{
	json j = json::object();
	if (!comm.empty())
		j["comm"] = comm;
	if (failed)
		j["failed"] = true;
	if (min_duration_ns)
		j["min_duration"] = min_duration_text;
	if (!syscalls.empty())
		j["syscall"] = syscalls;
	return j;
}

result<filter_spec> parse_filters(const json &j, const std::string &path)
{
	auto at = [&](const std::string &key, const std::string &msg) {
		return usage_error(path + (key.empty() ? "" : "." + key) + ": " + msg);
	};
	if (!j.is_object())
		return at("", "expected an object with comm, failed, min_duration or syscall");
	filter_spec f;
	for (const auto &[k, v] : j.items()) {
		std::string where = path + "." + k;
		if (k == "comm") {
			std::vector<std::string> names;
			if (v.is_string())
				names.push_back(v.get<std::string>());
			else if (v.is_array()) {
				for (size_t i = 0; i < v.size(); i++) {
					if (!v[i].is_string())
						return at(k + "[" + std::to_string(i) + "]", "expected a string");
					names.push_back(v[i].get<std::string>());
				}
			} else
				return at(k, "expected a name or an array of names");
			for (const auto &n : names) {
				if (auto r = check_comm_pattern(n, where); !r)
					return r.err();
				f.comm.push_back(n);
			}
			if (f.comm.size() > PI_FILTER_COMMS)
				return at(k, "at most " + std::to_string(PI_FILTER_COMMS) + " names or patterns");
		} else if (k == "failed") {
			if (!v.is_boolean())
				return at(k, "expected true or false");
			f.failed = v.get<bool>();
		} else if (k == "min_duration") {
			if (!v.is_string())
				return at(k, "expected a duration with its unit, as a string (\"2ms\")");
			auto ns = parse_duration_ns(v.get<std::string>(), where);
			if (!ns)
				return ns.err();
			f.min_duration_ns = *ns;
			f.min_duration_text = v.get<std::string>();
		} else if (k == "syscall") {
			std::vector<std::string> lists;
			if (v.is_string())
				lists.push_back(v.get<std::string>());
			else if (v.is_array()) {
				for (size_t i = 0; i < v.size(); i++) {
					if (!v[i].is_string())
						return at(k + "[" + std::to_string(i) + "]", "expected a syscall name");
					lists.push_back(v[i].get<std::string>());
				}
			} else
				return at(k, "expected a syscall name or an array of names");
			for (const auto &l : lists)
				if (auto r = add_syscalls(f, l, where); !r)
					return r.err();
			if (lists.empty())
				return at(k, "expected at least one syscall name");
		} else {
			return at(k, "unknown key (expected comm, failed, min_duration or syscall)");
		}
	}
	return f;
}

} // namespace procimage::core
