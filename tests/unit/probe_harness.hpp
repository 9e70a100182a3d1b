// SPDX-License-Identifier: Apache-2.0
// Unit-test harness for probe plugins: load the built .so, check a configuration, create an
// instance with a fake host that collects every record it emits as JSON (the jsonl form), and
// feed it canned kernel records. Nothing is loaded into the kernel.
#pragma once

#include "format.hpp"
#include "plugin_loader.hpp"
#include "support.hpp"

#include <procimage/bpf/common.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstring>
#include <string>
#include <vector>

namespace procimage::test {

// Added to every kernel timestamp by the fake host (boot ns -> "epoch" ns).
constexpr uint64_t FAKE_BOOT_TO_EPOCH_NS = 1000000000000ULL;

inline core::plugin_ptr probe_plugin(const std::string &name)
{
	auto p = core::load_plugin(build_dir() + "/plugins/probe_" + name + ".so");
	REQUIRE(p.ok());
	return *p;
}

// "" when the configuration is accepted, else the probe's error text.
inline std::string validate_probe(const std::string &name, const std::string &cfg)
{
	auto p = probe_plugin(name);
	char err[PI_ERRBUF_SIZE] = "";
	if (p->desc->probe->validate(cfg.c_str(), err, sizeof err) == PI_OK)
		return "";
	return err;
}

struct record_collector {
	std::vector<nlohmann::json> records;

	static void emit(void *ctx, const pi_record *r)
	{
		static_cast<record_collector *>(ctx)->records.push_back(nlohmann::json::parse(sinks::record_json(*r)));
	}
	// A host whose emit lands here.
	pi_host host()
	{
		pi_host h{};
		h.size = sizeof h;
		h.api_major = PI_API_MAJOR;
		h.api_minor = PI_API_MINOR;
		h.ctx = this;
		h.emit = emit;
		h.boot_to_epoch_ns = FAKE_BOOT_TO_EPOCH_NS;
		h.control_map_fd = h.targets_map_fd = -1;
		return h;
	}
};

// One instance of a probe plugin, created (not loaded) with a fake host.
struct probe_instance {
	core::plugin_ptr plugin;
	record_collector c;
	pi_host host{};
	void *inst = nullptr;

	explicit probe_instance(const std::string &name, const std::string &cfg = "{}") : plugin(probe_plugin(name))
	{
		host = c.host();
		char err[PI_ERRBUF_SIZE] = "";
		inst = plugin->desc->probe->create(&host, cfg.c_str(), err, sizeof err);
		INFO(err);
		REQUIRE(inst);
	}
	probe_instance(const probe_instance &) = delete;
	probe_instance &operator=(const probe_instance &) = delete;
	~probe_instance() { plugin->desc->probe->destroy(inst); }

	int feed(const void *rec, size_t len, uint32_t ring = 0)
	{
		return plugin->desc->probe->on_data(inst, ring, rec, len);
	}
	std::vector<nlohmann::json> &records() { return c.records; }
};

// A kernel record header as the BPF side fills it: CPU 1, 5 s after boot, process started at 4 s.
inline void fill_header(pi_event_header &h, uint16_t kind, uint16_t size, uint32_t pid, uint32_t tid,
			const char *comm)
{
	h.kind = kind;
	h.size = size;
	h.cpu = 1;
	h.ts_boot_ns = 5000000000ULL;
	h.pid = pid;
	h.tid = tid;
	h.pid_start_ns = 4000000000ULL;
	std::strncpy(h.comm, comm, sizeof h.comm);
}

} // namespace procimage::test
