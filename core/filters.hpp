// SPDX-License-Identifier: Apache-2.0
//
// The run's filters: --comm, --failed, --min-duration, --syscall, or the pipeline's "filters"
// object (docs/filters.md). One grammar for every probe: each applies what it can, in the
// kernel where it can, and the host checks what no kernel side can (fnmatch patterns, probes
// built before ABI 1.3).
#pragma once

#include "result.hpp"

#include <procimage/plugin_api.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace procimage::core {

struct filter_spec {
	std::vector<std::string> comm;     // exact names or fnmatch(3) patterns
	bool failed = false;               // stream only failures
	uint64_t min_duration_ns = 0;      // stream only intervals at least this long
	std::string min_duration_text;     // as given ("2ms"), printed back
	std::vector<std::string> syscalls; // names as given
	std::vector<uint32_t> syscall_nrs; // the running architecture's numbers, same order

	bool empty() const { return comm.empty() && !failed && !min_duration_ns && syscalls.empty(); }
	// Does a thread name pass the comm filter (true when there is none)?
	bool comm_matches(const char *name) const;
	// Is a pattern one the kernel cannot check whole (a wildcard other than a trailing '*')?
	bool comm_needs_host() const;
	// The ABI form handed to the probes (pi_host.filters).
	pi_filters to_abi() const;
	nlohmann::json to_json() const;
};

// A duration with its unit: a number (decimals allowed) and ns, us, ms or s, e.g. "500us",
// "2ms", "1.5s". `what` names the option or key in the message.
result<uint64_t> parse_duration_ns(const std::string &text, const std::string &what);
// A comm pattern: 1..31 bytes; an exact name at most 15 (the kernel's thread names).
result<void> check_comm_pattern(const std::string &pattern, const std::string &what);
// Syscall names, comma-separated ("openat,read") or one by one, to the running
// architecture's numbers.
result<void> add_syscalls(filter_spec &f, const std::string &list, const std::string &what);
// The pipeline's "filters" object.
result<filter_spec> parse_filters(const nlohmann::json &j, const std::string &path);

} // namespace procimage::core
