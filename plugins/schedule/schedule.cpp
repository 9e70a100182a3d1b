// SPDX-License-Identifier: Apache-2.0
//
// schedule probe, user side: load/attach schedule.bpf.c, read its maps at every tick and emit
// the run-queue delay of the target beside the whole system's (report.hpp).
#include "report.hpp"
#include "schedule.h"
#include "schedule.skel.h"

#include <procimage/bpf.hpp>
#include <procimage/config.hpp>
#include <procimage/sdk.hpp>
#include <probe_schedule_record_schema.h>

#include <algorithm>
#include <cstddef>
#include <ctime>
#include <vector>

#include <unistd.h>

namespace procimage::schedule {

namespace sdk = procimage::sdk;

static_assert(sizeof(sc_thread) % 8 == 0, "sc_thread must have no tail padding");
static_assert(sizeof(sc_cpu) % 8 == 0, "sc_cpu must have no tail padding");

struct config {
	bool system = true;
	uint32_t top = 20;
	uint32_t max_threads = 16384;
	uint32_t ringbuf_kb = 1024;

	explicit config(const std::string &text)
	{
		sdk::config_reader r(text);
		system = r.get_bool("system", true);
		top = static_cast<uint32_t>(r.get_int("top", 20, 0, 1000000));
		max_threads = static_cast<uint32_t>(r.get_int("max_threads", 16384, 64, 4194304));
		ringbuf_kb = static_cast<uint32_t>(r.get_int("ringbuf_kb", 1024, 16, 1 << 20));
		if (ringbuf_kb & (ringbuf_kb - 1))
			throw sdk::config_error("ringbuf_kb: expected a power of two, got " + std::to_string(ringbuf_kb));
		r.finish();
	}
};


class schedule_probe final : public sdk::probe {
public:
	static void validate(const std::string &text) { config c(text); }

	schedule_probe(const pi_host &host, const std::string &text)
		: sdk::probe(host), cfg_(text), agg_(this->host(), {})
	{
	}

	~schedule_probe() override
	{
		links_.clear();
		schedule_bpf__destroy(skel_);
	}

	// Threads whose stamps the hash keeps where there is no task storage; one more waiting
	// thread finds no room and is counted as lost.
	static constexpr uint32_t stamp_hash_entries = 65536;

	void load(pi_probe_io &io) override
	{
		sdk::require_kernel_for("schedule");
		ncpus_ = libbpf_num_possible_cpus();
		if (ncpus_ <= 0)
			throw std::runtime_error("cannot count the possible CPUs: " + sdk::errno_text(ncpus_));
		skel_ = schedule_bpf__open();
		if (!skel_)
			throw std::runtime_error("cannot open the schedule BPF object: " + sdk::errno_text(errno));
		sdk::set_common_rodata(skel_->rodata, host(), cfg_.ringbuf_kb * 1024ULL);
		skel_->rodata->sc_system_on = cfg_.system;
		// Before 5.11: the stamps go in a hash keyed by thread id (see schedule.bpf.c).
		skel_->rodata->sc_task_storage = sdk::task_storage_or_hash(skel_->maps.sc_tasks, stamp_hash_entries);
		sdk::reuse_shared_maps(skel_->obj, host());
		bpf_map__set_max_entries(skel_->maps.sc_events, cfg_.ringbuf_kb * 1024);
		bpf_map__set_max_entries(skel_->maps.sc_threads, cfg_.max_threads);
		int err = schedule_bpf__load(skel_);
		if (err)
			throw std::runtime_error("cannot load the schedule BPF object: " + sdk::errno_text(err));
		io.n_ringbufs = 1;
		io.ringbuf_fds[0] = bpf_map__fd(skel_->maps.sc_events);
		io.lost_map_fd = sdk::lost_map_fd(skel_->obj);
		sdk::name_lost_causes(io, {{SC_LOST_THREADS, "sc_threads: a thread's figures found the map full (raise schedule.max_threads)"},
					   {SC_LOST_TASKS, "sc_tasks: a thread's wake-up time could not be stored (kernel memory, or the 65536-thread table before Linux 5.11)"}});
	}

	void attach(const pi_target &target) override
	{
		check_options(target);
		links_.clear();
		finish(sdk::boot_now_ns()); // an earlier activation not reported yet
		// A new activation starts from nothing: no figure or epoch of an earlier one (stamps
		// carry the activation's generation and are ignored once it changes).
		sdk::clear_map(bpf_map__fd(skel_->maps.sc_threads), sizeof(uint32_t));
		std::vector<sc_cpu> zero(static_cast<size_t>(ncpus_));
		uint32_t key = 0;
		if (bpf_map_update_elem(bpf_map__fd(skel_->maps.sc_system), &key, zero.data(), BPF_ANY) != 0)
			throw std::runtime_error("cannot reset the system figures: " + sdk::errno_text(errno));
		aggregator::options o;
		o.system = cfg_.system;
		o.top = cfg_.top;
		// process rows when the target names processes: -P, -- CMD, a cgroup's (a bounded set;
		// the Prometheus series of a process come from them)
		o.groups = target.kind == PI_TARGET_TGID || target.kind == PI_TARGET_CGROUP;
		o.idle_cpu = target.idle_cpu;
		long online = sysconf(_SC_NPROCESSORS_ONLN);
		o.cpus = online > 0 ? static_cast<uint32_t>(online) : static_cast<uint32_t>(ncpus_);
		agg_.set_options(o);
		agg_.start(sdk::boot_now_ns());
		detached_ns_ = 0;
		__atomic_store_n(&skel_->bss->sc_epoch, agg_.epoch(), __ATOMIC_RELEASE);
		timespec mono{};
		clock_gettime(CLOCK_MONOTONIC, &mono); // the clock of task->sched_info stamps
		__atomic_store_n(&skel_->bss->sc_start_ns,
				 static_cast<uint64_t>(mono.tv_sec) * 1000000000ULL + static_cast<uint64_t>(mono.tv_nsec),
				 __ATOMIC_RELEASE);
		links_.attach_all(skel_->obj);
	}

	// The activation ends. Its totals go out at the next tick (or the next attach), once the
	// host has delivered the records still queued, so that threads freed at the very end are
	// in them. The maps stay readable until the next attach resets them.
	void detach() override
	{
		if (agg_.started() && !detached_ns_)
			detached_ns_ = sdk::boot_now_ns();
		links_.clear();
	}

	void on_data(uint32_t, const void *data, size_t len) override
	{
		if (len < sizeof(pi_event_header))
			throw std::runtime_error("short record (" + std::to_string(len) + " bytes)");
		const auto *h = static_cast<const pi_event_header *>(data);
		if (h->kind != SC_THREAD_END)
			throw std::runtime_error("unknown record kind " + std::to_string(h->kind));
		if (len < sizeof(sc_thread_end))
			throw std::runtime_error("short thread_end record (" + std::to_string(len) + " bytes)");
		agg_.thread_end(static_cast<const sc_thread_end *>(data)->t);
	}

	void on_tick(uint64_t now_boot_ns, bool final) override
	{
		if (!agg_.started())
			return;
		if (detached_ns_)
			return finish(now_boot_ns);
		collect();
		agg_.report(now_boot_ns, final);
	}

private:
	// This probe takes no per-activation options (pi_target.options): refuse any, by name.
	static void check_options(const pi_target &target)
	{
		if (target.size < offsetof(pi_target, options) + sizeof(target.options) || !target.options)
			return;
		nlohmann::json o;
		try {
			o = nlohmann::json::parse(target.options);
		} catch (const nlohmann::json::exception &e) {
			throw std::runtime_error(std::string("activation options: invalid JSON: ") + e.what());
		}
		if (!o.is_object())
			throw std::runtime_error("activation options: expected an object");
		for (const auto &[k, _] : o.items())
			throw std::runtime_error(k + ": unknown activation option (schedule takes none)");
	}

	// Report the last interval and the totals of an activation that has ended.
	void finish(uint64_t now_boot_ns)
	{
		if (!agg_.started())
			return;
		uint64_t end = detached_ns_ ? std::min(detached_ns_, now_boot_ns) : now_boot_ns;
		collect();
		agg_.report(end, true);
		detached_ns_ = 0;
	}

	// Close the kernel's current interval and read the cumulative figures.
	void collect()
	{
		__atomic_store_n(&skel_->bss->sc_epoch, agg_.advance(), __ATOMIC_RELEASE);
		read_system();
		read_threads();
	}

	void read_system()
	{
		if (!cfg_.system)
			return;
		std::vector<sc_cpu> cpus(static_cast<size_t>(ncpus_));
		uint32_t key = 0;
		if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.sc_system), &key, cpus.data()) != 0)
			throw std::runtime_error("cannot read the system figures: " + sdk::errno_text(errno));
		agg_.system(cpus);
	}

	void read_threads()
	{
		int fd = bpf_map__fd(skel_->maps.sc_threads);
		const uint32_t chunk = 256;
		std::vector<uint32_t> keys(chunk);
		std::vector<sc_thread> vals(chunk);
		uint32_t in = 0, out = 0;
		bool first = true;
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		for (;;) {
			uint32_t n = chunk;
			int err = bpf_map_lookup_batch(fd, first ? nullptr : &in, &out, keys.data(), vals.data(), &n, &opts);
			int e = errno;
			if (err && e != ENOENT)
				throw std::runtime_error("cannot read the thread figures: " + sdk::errno_text(e));
			for (uint32_t i = 0; i < n; i++)
				agg_.thread(vals[i]);
			if (err)
				break; // ENOENT: no more entries
			in = out;
			first = false;
		}
	}


	config cfg_;
	aggregator agg_;
	schedule_bpf *skel_ = nullptr;
	sdk::links links_;
	int ncpus_ = 0;
	uint64_t detached_ns_ = 0; // boot ns when the activation's links were removed; 0 = attached
};

} // namespace procimage::schedule

PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA(procimage::schedule::schedule_probe, "schedule", PROCIMAGE_VERSION,
		       "scheduling delay (run-queue wait) of the target beside the whole system",
		       PROCIMAGE_RECORD_SCHEMA);
