// SPDX-License-Identifier: Apache-2.0
//
// The host: resolves and checks plugins, loads probes with the shared activation map, runs the
// event bus (one epoll over every ring buffer, a timerfd for periodic work, a signalfd) and
// delivers records to the sinks wired in the pipeline. Shuts down cleanly on SIGINT/SIGTERM or
// when the traced command exits.
#pragma once

#include "activation.hpp"
#include "control.hpp"
#include "pipeline.hpp"
#include "plugin_loader.hpp"
#include "result.hpp"
#include "system.hpp"

#include <procimage/plugin_api.h>

#include <csignal>
#include <memory>
#include <string>
#include <mutex>
#include <vector>

struct ring_buffer;

namespace procimage::core {

namespace cgroup {
class names;
}

struct host_options {
	std::vector<std::string> plugin_dirs; // searched before the pipeline's and the defaults
	bool check_only = false;              // validate the pipeline and plugins, load nothing
	std::string control_name = "default"; // control channel for procimage-ctl
};

class host {
public:
	host();
	~host();
	host(const host &) = delete;
	host &operator=(const host &) = delete;

	// Runs the pipeline to the end; returns procimage's exit status.
	int run(const pipeline &p, const host_options &opts);

	// Plugin resolution and configuration checks only (no privileges needed).
	result<void> prepare(const pipeline &p, const host_options &opts);

	struct probe_inst;
	struct sink_inst;

private:
	result<void> start();
	result<void> load_probes(); // every probe's BPF object, at the same time where allowed
	int loop();
	void shutdown();
	void drain();     // the ring buffers, for at most DRAIN_BUDGET_NS
	void drain_all(); // the ring buffers, to the end
	bool drain_over_budget() const;
	void tick(bool final);
	void check_lost();
	void flush_sinks();
	void sink_failed(sink_inst &s, const std::string &what);
	void stop_collecting_without_sinks();
	void host_record(const std::vector<size_t> &sinks, const char *event, const std::string &source,
			 const std::vector<std::pair<const char *, uint64_t>> &values, uint64_t boot_ns = 0,
			 const std::vector<std::pair<const char *, std::string>> &texts = {}, const char *cgroup = nullptr);
	void deliver(const std::vector<size_t> &sinks, const pi_record &rec);
	std::vector<size_t> all_sinks() const;

	// Activation (the shared map, then the probe's links) and its undoing.
	result<void> activate(probe_inst &p, const target_spec &t, const nlohmann::json &options,
			      uint32_t duration_s);
	void deactivate(probe_inst &p, const char *why);
	// Every attached probe at once: each probe's links come off in a thread of its own, so
	// that the kernel's waits for running programs (an RCU grace period per link or so)
	// overlap instead of adding up, probe after probe.
	void deactivate_all(const char *why);
	void last_interval(probe_inst &p, uint64_t off_ns);
	std::string detach_probe(probe_inst &p);
	void update_following();
	void arm_deadline();
	void expire_deadlines();

	// The control channel.
	void serve_control();
	nlohmann::json handle_control(const nlohmann::json &req);
	nlohmann::json status_json() const;

	static const sigset_t &handled_signals();
	static void emit_cb(void *ctx, const pi_record *rec);
	// The cgroup path a probe's record carries (pi_record.cgroup), or nullptr.
	const char *cgroup_of(const probe_inst &p, const pi_record &rec);
	static void log_cb(void *ctx, int level, const char *msg);
	static void sink_log_cb(void *ctx, int level, const char *msg);
	static int ringbuf_cb(void *ctx, void *data, size_t size);

	pipeline pipe_;
	std::string record_schema_; // the run's joined record schema (JSON text)
	std::vector<std::string> dirs_;
	std::vector<std::unique_ptr<sink_inst>> sinks_;
	std::vector<std::unique_ptr<probe_inst>> probes_;
	activation act_;
	std::unique_ptr<cgroup::names> cgroup_names_; // the records' cgroup paths
	held_command cmd_;
	ring_buffer *rb_ = nullptr;
	int epfd_ = -1, timerfd_ = -1, flushfd_ = -1, sigfd_ = -1, deadlinefd_ = -1;
	int durationfd_ = -1; // --duration: the end of the run
	control_server ctl_;
	std::string control_name_ = "default";
	uint64_t started_epoch_ns_ = 0;
	uint64_t boot_to_epoch_ = 0;
	pi_filters filters_abi_{}; // pipe_.filters as handed to the probes (pi_host.filters)
	uint64_t core_lost_ = 0;
	bool stopping_ = false;
	bool parallel_detach_ = false;  // probes detach in threads: emit_cb serializes on emit_mu_
	std::mutex emit_mu_;
	bool no_sink_left_ = false;     // every sink failed ...
	bool no_sink_handled_ = false;  // ... and collection stopped
	bool backlog_ = false;            // a drain stopped with records left
	uint64_t drain_deadline_ns_ = 0;  // while draining: when to stop
	uint32_t drained_ = 0;            // records handed to the probes (the budget is checked every 8)
	uint64_t last_lost_check_ns_ = 0; // the last check_lost()
	int exit_status_ = 0;
};

} // namespace procimage::core
