// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: its configuration keys (README: *Configuration*), checked as read.
#pragma once

#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <cstdint>
#include <string>

namespace procimage::lock {

namespace sdk = procimage::sdk;

// How long a new process of the target lives before it gets its uprobes (README: *New
// processes*).
constexpr int64_t ATTACH_AFTER_MS = 10;

struct config {
	std::string mode = "auto";
	bool acquisitions = false;
	uint64_t contention_min_ns = 1000000;
	bool system = true;
	uint32_t top = 10;
	uint32_t max_locks = 4096;
	uint32_t max_threads = 4096;
	uint32_t max_futexes = 8192;
	uint32_t ringbuf_kb = 1024;
	std::string uprobe_attach = "auto";
	bool lock_return = false;
	std::string uprobe_place = "auto";
	uint64_t attach_after_ns = 0;

	explicit config(const std::string &text)
	{
		sdk::config_reader r(text);
		mode = r.get_enum("mode", "auto", {"auto", "full", "contention"});
		acquisitions = r.get_bool("acquisitions", false);
		contention_min_ns = static_cast<uint64_t>(r.get_int("contention_min_us", 1000, 0, 60000000)) * 1000;
		system = r.get_bool("system", true);
		top = static_cast<uint32_t>(r.get_int("top", 10, 0, 100000));
		max_locks = static_cast<uint32_t>(r.get_int("max_locks", 4096, 16, 1 << 20));
		max_threads = static_cast<uint32_t>(r.get_int("max_threads", 4096, 16, 1 << 20));
		max_futexes = static_cast<uint32_t>(r.get_int("max_futexes", 8192, 16, 1 << 20));
		ringbuf_kb = static_cast<uint32_t>(r.get_int("ringbuf_kb", 1024, 64, 1 << 20));
		uprobe_attach = r.get_enum("uprobe_attach", "auto", {"auto", "multi", "single"});
		lock_return = r.get_bool("lock_return", false);
		uprobe_place = r.get_enum("uprobe_place", "auto", {"auto", "entry"});
		attach_after_ns = static_cast<uint64_t>(r.get_int("attach_after_ms", ATTACH_AFTER_MS, 0, 60000)) * 1000000;
		if (ringbuf_kb & (ringbuf_kb - 1))
			throw sdk::config_error("ringbuf_kb: expected a power of two, got " + std::to_string(ringbuf_kb));
		if (acquisitions && mode == "contention")
			throw sdk::config_error("acquisitions: needs hold tracking (uprobes); mode \"contention\" has none");
		if (lock_return && mode == "contention")
			throw sdk::config_error("lock_return: return probes are uprobes; mode \"contention\" has none");
		r.finish();
	}
};

} // namespace procimage::lock
