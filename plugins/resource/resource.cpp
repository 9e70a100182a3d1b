// SPDX-License-Identifier: Apache-2.0
//
// resource probe, user side: every interval, run the task iterator of resource.bpf.c, turn the
// cumulative counters into per-thread and per-process interval figures (accounting.hpp), add
// the system's reference figures (system_stats.hpp) and emit the records.
#include "resource.h"
#include "accounting.hpp"
#include "resource.skel.h"
#include "system_stats.hpp"

#include <procimage/bpf.hpp>
#include <procimage/config.hpp>
#include <procimage/sdk.hpp>
#include <probe_resource_record_schema.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <unistd.h>

namespace procimage::resource {

namespace sdk = procimage::sdk;

struct config {
	bool threads = true;
	bool processes = true;
	bool system = true;
	bool active_only = false;
	uint32_t ringbuf_kb = 1024;

	explicit config(const std::string &text)
	{
		sdk::config_reader r(text);
		read_outputs(r, *this);
		ringbuf_kb = static_cast<uint32_t>(r.get_int("ringbuf_kb", 1024, 64, 1 << 20));
		if (ringbuf_kb & (ringbuf_kb - 1))
			throw sdk::config_error("ringbuf_kb: expected a power of two, got " +
						std::to_string(ringbuf_kb));
		r.finish();
	}

	// Activation options (procimage-ctl, pipeline "options"): the output switches only.
	void apply_options(const std::string &text)
	{
		sdk::config_reader r(text);
		read_outputs(r, *this);
		r.finish();
	}

private:
	static void read_outputs(sdk::config_reader &r, config &c)
	{
		c.threads = r.get_bool("threads", c.threads);
		c.processes = r.get_bool("processes", c.processes);
		c.system = r.get_bool("system", c.system);
		c.active_only = r.get_bool("active_only", c.active_only);
	}
};

inline uint32_t tgid_of(uint32_t tid)
{
	std::string s = slurp("/proc/" + std::to_string(tid) + "/status");
	auto at = s.find("\nTgid:");
	if (at == std::string::npos)
		return 0;
	return static_cast<uint32_t>(std::strtoul(s.c_str() + at + 6, nullptr, 10));
}

class resource_probe final : public sdk::probe {
public:
	static void validate(const std::string &text) { config c(text); }

	resource_probe(const pi_host &host, const std::string &text)
		: sdk::probe(host), cfg_(text), acct_(static_cast<uint64_t>(sysconf(_SC_PAGESIZE)))
	{
	}

	~resource_probe() override
	{
		links_.clear();
		resource_bpf__destroy(skel_);
	}

	void load(pi_probe_io &io) override
	{
		sdk::require_kernel_for("resource");
		skel_ = resource_bpf__open();
		if (!skel_)
			throw std::runtime_error("cannot open the resource BPF object: " + sdk::errno_text(errno));
		sdk::set_common_rodata(skel_->rodata, host(), cfg_.ringbuf_kb * 1024ULL);
		int ncpu = libbpf_num_possible_cpus();
		if (ncpu <= 0)
			throw std::runtime_error("cannot count the possible CPUs: " + sdk::errno_text(ncpu));
		skel_->rodata->rs_ncpu = static_cast<uint32_t>(ncpu);
		sdk::reuse_shared_maps(skel_->obj, host());
		bpf_map__set_max_entries(skel_->maps.rs_events, cfg_.ringbuf_kb * 1024);
		int err = resource_bpf__load(skel_);
		if (err)
			throw std::runtime_error("cannot load the resource BPF object: " + sdk::errno_text(err));
		io.n_ringbufs = 1;
		io.ringbuf_fds[0] = bpf_map__fd(skel_->maps.rs_events);
		io.lost_map_fd = sdk::lost_map_fd(skel_->obj);
	}

	void attach(const pi_target &target) override
	{
		if (attached_)
			detach();
		act_ = cfg_;
		if (target.options && *target.options)
			act_.apply_options(target.options);
		// a fresh measurement: nothing carried over from an earlier activation
		acct_.reset();
		exits_.clear();
		sys_prev_ = {};
		have_sys_ = false;
		target_kind_ = target.kind;
		follow_ = target.follow != 0;
		include_self_ = target.include_self != 0;
		idle_cpu_ = target.idle_cpu;
		set_groups(target);
		links_.attach(skel_->progs.rs_exit);
		links_.attach(skel_->progs.rs_dead_switch);
		bpf_link *it = bpf_program__attach_iter(skel_->progs.rs_iter, nullptr);
		if (!it) {
			int e = errno;
			links_.clear();
			clear_groups();
			throw std::runtime_error("cannot attach the task iterator rs_iter: " + sdk::errno_text(e));
		}
		links_.add(it);
		iter_ = it;
		disks_ = physical_disks();
		attached_ = true;
		closed_ = false;
		warn_unlisted(target, sample(sample_kind::baseline));
	}

	void detach() override
	{
		if (!attached_)
			return;
		// The interval in progress ends here, unless the host already closed it in on_tick.
		if (!closed_) {
			try {
				sample(sample_kind::closing);
			} catch (const std::exception &e) {
				sdk::log(host(), PI_LOG_WARN, std::string("resource: closing sample failed: ") + e.what());
			}
		}
		links_.clear();
		iter_ = nullptr;
		clear_groups();
		attached_ = false;
		closed_ = true;
	}

	void on_data(uint32_t, const void *data, size_t len) override
	{
		if (len < sizeof(rs_task))
			throw std::runtime_error("short record (" + std::to_string(len) + " bytes)");
		const auto *r = static_cast<const rs_task *>(data);
		if (r->h.kind == RS_DEAD) {
			// the same task's exit record came just before it (same ring buffer, later in time)
			for (auto it = exits_.rbegin(); it != exits_.rend(); ++it)
				if (it->h.tid == r->h.tid) {
					if (r->self.runtime_ns > it->self.runtime_ns)
						it->self.runtime_ns = r->self.runtime_ns;
					break;
				}
			return;
		}
		if (r->h.kind != RS_EXIT)
			throw std::runtime_error("unknown record kind " + std::to_string(r->h.kind));
		exits_.push_back(*r);
	}

	void on_tick(uint64_t, bool) override
	{
		if (attached_ && !closed_) {
			// The host switches the slot off, then asks for the partial interval: that is
			// the closing sample of this activation.
			if (slot_active()) {
				sample(sample_kind::regular);
			} else {
				sample(sample_kind::closing);
				closed_ = true;
			}
		} else if (!exits_.empty()) {
			// exit records drained after the closing sample: those threads' last intervals
			auto res = acct_.update(sdk::boot_now_ns(), {}, false, std::move(exits_));
			exits_.clear();
			emit(res);
		}
	}

private:
	void set_groups(const pi_target &target)
	{
		clear_groups();
		if (target.kind != PI_TARGET_TID)
			return;
		int fd = bpf_map__fd(skel_->maps.rs_groups);
		for (uint32_t i = 0; i < target.n_ids; i++) {
			if (target.ids[i] == 0)
				continue; // an idle task: no process
			uint32_t tgid = tgid_of(target.ids[i]);
			if (!tgid)
				continue; // gone already
			uint8_t one = 1;
			if (bpf_map_update_elem(fd, &tgid, &one, BPF_ANY) != 0)
				throw std::runtime_error("cannot note process " + std::to_string(tgid) +
							 " of thread " + std::to_string(target.ids[i]) + ": " +
							 sdk::errno_text(errno));
			groups_.push_back(tgid);
		}
		skel_->bss->rs_groups_on = !groups_.empty();
	}

	// A named target the kernel's task iterator did not list (on some machines pid 1 and its
	// threads): say so, rather than leave its records silently missing.
	void warn_unlisted(const pi_target &target, const std::vector<rs_task> &samples)
	{
		if (target.kind != PI_TARGET_TGID && target.kind != PI_TARGET_TID)
			return;
		// (with a comm filter, a target whose name does not match is left out on purpose)
		if (const pi_filters *f = sdk::host_filters(host()); f && f->n_comms)
			return;
		for (uint32_t i = 0; i < target.n_ids; i++) {
			uint32_t id = target.ids[i];
			if (id == 0)
				continue; // the idle task: not in the task list, reported from /proc/stat
			bool seen = false;
			for (const auto &t : samples)
				if ((target.kind == PI_TARGET_TGID ? t.h.pid : t.h.tid) == id) {
					seen = true;
					break;
				}
			if (seen || access(("/proc/" + std::to_string(id)).c_str(), F_OK) != 0)
				continue; // listed, or gone already
			sdk::log(host(), PI_LOG_WARN,
				 "resource: " + std::string(target.kind == PI_TARGET_TGID ? "process " : "thread ") +
					 std::to_string(id) +
					 " exists but the kernel's task iterator does not list it on this system: it "
					 "gets no resource records (plugins/resource/README.md, Limits)");
		}
	}

	void clear_groups()
	{
		skel_->bss->rs_groups_on = false;
		int fd = bpf_map__fd(skel_->maps.rs_groups);
		for (uint32_t tgid : groups_)
			bpf_map_delete_elem(fd, &tgid);
		groups_.clear();
	}

	bool slot_active() const
	{
		uint32_t slot = host().slot;
		pi_control c{};
		if (bpf_map_lookup_elem(host().control_map_fd, &slot, &c) != 0)
			return false;
		return c.mode != PI_MODE_OFF;
	}

	// The closing sample walks every task (the target is gone from the shared maps): keep the
	// ones this activation followed, the threads born since in their processes, and the
	// processes born since that the target would have taken in.
	std::vector<rs_task> followed_only(std::vector<rs_task> all)
	{
		std::vector<rs_task> out;
		const uint64_t last = acct_.last();
		for (auto &s : all) {
			bool newborn = s.start_ns > last;
			int t = acct_.thread_target(s.h.tid, s.start_ns);
			if (t >= 0) {
				s.flags |= t ? RS_F_TARGET : 0;
			} else if (newborn && acct_.known_process(s.h.pid)) {
				s.flags |= target_kind_ != PI_TARGET_TID ? RS_F_TARGET : 0;
			} else if (newborn && target_kind_ == PI_TARGET_ALL &&
				   (include_self_ || s.h.pid != host().self_tgid)) {
				s.flags |= RS_F_TARGET;
			} else if (newborn && follow_ && acct_.known_process(s.ppid)) {
				s.flags |= RS_F_TARGET;
			} else {
				continue;
			}
			out.push_back(s);
		}
		return out;
	}

	std::vector<rs_task> iterate()
	{
		buf_ = sdk::read_iter(iter_);
		if (buf_.size() % sizeof(rs_task))
			throw std::runtime_error("task iterator returned " + std::to_string(buf_.size()) +
						 " bytes, not whole records");
		std::vector<rs_task> out(buf_.size() / sizeof(rs_task));
		if (!out.empty())
			std::memcpy(out.data(), buf_.data(), buf_.size());
		return out;
	}

	enum class sample_kind { baseline, regular, closing };

	// Returns the tasks sampled.
	std::vector<rs_task> sample(sample_kind kind)
	{
		const bool report = kind != sample_kind::baseline;
		uint64_t now = sdk::boot_now_ns();
		std::vector<rs_task> samples;
		if (kind == sample_kind::closing) {
			skel_->bss->rs_snapshot = true;
			try {
				samples = followed_only(iterate());
			} catch (...) {
				skel_->bss->rs_snapshot = false;
				throw;
			}
			skel_->bss->rs_snapshot = false;
		} else {
			samples = iterate();
		}
		if (!warned_approx_)
			for (const auto &s : samples)
				if (s.flags & RS_F_RSS_APPROX) {
					warned_approx_ = true;
					sdk::log(host(), PI_LOG_WARN,
						 "resource: the per-CPU parts of the RSS counters cannot be read on this "
						 "kernel: RSS figures are the counters' global parts (off by up to one "
						 "counter batch, 32 pages or more, per CPU)");
					break;
				}
		std::vector<rs_task> exits;
		exits.swap(exits_);
		auto res = acct_.update(now, samples, true, std::move(exits));
		system_sample sys = read_system(now);
		if (report)
			emit(res);
		if (report && have_sys_) {
			if (act_.system)
				emit_system(sys);
			if (idle_cpu_ >= 0)
				emit_idle(sys);
		}
		sys_prev_ = sys;
		have_sys_ = true;
		return samples;
	}

	system_sample read_system(uint64_t now)
	{
		system_sample s;
		s.ts = now;
		// MemTotal only changes with memory hotplug: without the system row, /proc/meminfo is
		// read once for the targets' % of RAM, not at every tick.
		if (act_.system || mem_total_ == 0) {
			s.mem = parse_meminfo(slurp("/proc/meminfo"));
			mem_total_ = s.mem.total;
		}
		if (act_.system || idle_cpu_ >= 0)
			s.stat = parse_proc_stat(slurp("/proc/stat"));
		if (act_.system)
			s.disk = parse_diskstats(slurp("/proc/diskstats"), disks_);
		return s;
	}

	// --------------------------------------------------------------- records

	static bool quiet(const rs_counters &d) { return all_zero(d); }

	// Every record is one interval's (resource has no `total` rows: its *_total_* fields are
	// the kernel's own figures since the task started).
	static void window_fields(sdk::record &r, const char *scope, uint64_t interval_ns)
	{
		r.str("scope", scope).str("window", "interval").u64("interval_ns", interval_ns, PI_FMT_DURATION_NS);
	}

	template <typename R>
	void common_fields(sdk::record &r, const char *scope, const R &x)
	{
		const double secs = x.interval_ns / 1e9;
		auto rate = [&](uint64_t v) { return secs > 0 ? v / secs : 0.0; };
		window_fields(r, scope, x.interval_ns);
		r
			.f64("cpu_pct", x.interval_ns ? 100.0 * x.delta.runtime_ns / x.interval_ns : 0.0, PI_FMT_PERCENT)
			.u64("cpu_ns", x.delta.runtime_ns, PI_FMT_DURATION_NS)
			.u64("user_ns", x.user_ns, PI_FMT_DURATION_NS)
			.u64("system_ns", x.system_ns, PI_FMT_DURATION_NS)
			.u64("cpu_total_ns", x.total.runtime_ns, PI_FMT_DURATION_NS)
			.u64("rss_bytes", x.mem.rss(), PI_FMT_BYTES)
			.u64("rss_anon_bytes", x.mem.anon, PI_FMT_BYTES)
			.u64("rss_file_bytes", x.mem.file, PI_FMT_BYTES)
			.u64("rss_shmem_bytes", x.mem.shmem, PI_FMT_BYTES)
			.u64("swap_bytes", x.mem.swap, PI_FMT_BYTES)
			.f64("rss_pct", mem_total_ ? 100.0 * x.mem.rss() / mem_total_ : 0.0, PI_FMT_PERCENT)
			.u64("read_bytes", x.delta.rchar, PI_FMT_BYTES)
			.u64("write_bytes", x.delta.wchar, PI_FMT_BYTES)
			.f64("read_bytes_per_s", rate(x.delta.rchar), PI_FMT_BYTES)
			.f64("write_bytes_per_s", rate(x.delta.wchar), PI_FMT_BYTES)
			.u64("storage_read_bytes", x.delta.read_bytes, PI_FMT_BYTES)
			.u64("storage_write_bytes", x.delta.write_bytes, PI_FMT_BYTES)
			.f64("storage_read_bytes_per_s", rate(x.delta.read_bytes), PI_FMT_BYTES)
			.f64("storage_write_bytes_per_s", rate(x.delta.write_bytes), PI_FMT_BYTES)
			.u64("read_syscalls", x.delta.syscr)
			.u64("write_syscalls", x.delta.syscw)
			.u64("read_total_bytes", x.total.rchar, PI_FMT_BYTES)
			.u64("write_total_bytes", x.total.wchar, PI_FMT_BYTES)
			.u64("voluntary_switches", x.delta.nvcsw)
			.u64("involuntary_switches", x.delta.nivcsw)
			.u64("minor_faults", x.delta.min_flt)
			.u64("major_faults", x.delta.maj_flt);
	}

	void emit_thread(const thread_result &t)
	{
		if (!act_.threads || !t.target || (act_.active_only && !t.exited && quiet(t.delta)))
			return;
		sdk::record r("resource", "thread");
		r.ts(t.ts + host().boot_to_epoch_ns).ids(t.pid, t.tid).cpu(static_cast<int32_t>(t.cpu)).comm(t.comm).pid_start(t.pid_start);
		common_fields(r, "thread", t);
		r.u64("last_cpu", t.cpu).boolean("on_cpu", t.on_cpu).boolean("exited", t.exited);
		r.emit(host());
	}

	void emit_process(const process_result &p)
	{
		if (!act_.processes || (act_.active_only && !p.exited && quiet(p.delta)))
			return;
		sdk::record r("resource", "process");
		r.ts(p.ts + host().boot_to_epoch_ns).ids(p.pid, 0).comm(p.comm).pid_start(p.pid_start);
		common_fields(r, "process", p);
		r.u64("threads", p.threads).boolean("exited", p.exited);
		r.emit(host());
	}

	// By process: its threads (by thread id), then the process itself.
	void emit(const tick_result &res)
	{
		size_t ti = 0;
		const auto &th = res.threads;
		for (const auto &p : res.processes) {
			while (ti < th.size() && th[ti].pid <= p.pid)
				emit_thread(th[ti++]);
			emit_process(p);
		}
		while (ti < th.size())
			emit_thread(th[ti++]);
	}

	void emit_system(const system_sample &s)
	{
		const cpu_times d = diff(s.stat.all, sys_prev_.stat.all);
		const uint64_t total = d.total();
		const double ncpu = static_cast<double>(s.stat.cpus.size());
		const uint64_t interval = s.ts - sys_prev_.ts;
		const double secs = interval / 1e9;
		const uint64_t rd = diff(s.disk.read, sys_prev_.disk.read);
		const uint64_t wr = diff(s.disk.written, sys_prev_.disk.written);
		sdk::record r("resource", "system");
		r.ts(s.ts + host().boot_to_epoch_ns).ids(0, 0).comm("");
		window_fields(r, "system", interval);
		r.u64("ncpu", s.stat.cpus.size())
			.f64("cpu_pct", pct(d.busy(), total), PI_FMT_PERCENT)
			.f64("busy_cpu_pct", pct(d.busy(), total) * ncpu, PI_FMT_PERCENT)
			.f64("user_pct", pct(d.user + d.nice, total), PI_FMT_PERCENT)
			.f64("system_pct", pct(d.system + d.irq + d.softirq, total), PI_FMT_PERCENT)
			.f64("iowait_pct", pct(d.iowait, total), PI_FMT_PERCENT)
			.f64("steal_pct", pct(d.steal, total), PI_FMT_PERCENT)
			.u64("mem_total_bytes", s.mem.total, PI_FMT_BYTES)
			.u64("mem_used_bytes", s.mem.used(), PI_FMT_BYTES)
			.f64("mem_used_pct", pct(s.mem.used(), s.mem.total), PI_FMT_PERCENT)
			.u64("storage_read_bytes", rd, PI_FMT_BYTES)
			.u64("storage_write_bytes", wr, PI_FMT_BYTES)
			.f64("storage_read_bytes_per_s", secs > 0 ? rd / secs : 0.0, PI_FMT_BYTES)
			.f64("storage_write_bytes_per_s", secs > 0 ? wr / secs : 0.0, PI_FMT_BYTES);
		r.emit(host());
	}

	void emit_idle(const system_sample &s)
	{
		auto now = s.stat.cpus.find(idle_cpu_);
		auto before = sys_prev_.stat.cpus.find(idle_cpu_);
		sdk::record r("resource", "cpu");
		r.ts(s.ts + host().boot_to_epoch_ns).ids(0, 0).cpu(idle_cpu_).comm("swapper/" + std::to_string(idle_cpu_));
		const bool online = now != s.stat.cpus.end() && before != sys_prev_.stat.cpus.end();
		const cpu_times d = online ? diff(now->second, before->second) : cpu_times{};
		const uint64_t total = d.total();
		// the idle task of CPU N: a thread (pid 0, tid 0), described by its CPU's figures
		window_fields(r, "thread", s.ts - sys_prev_.ts);
		r.boolean("online", online)
			.f64("idle_pct", pct(d.idle_all(), total), PI_FMT_PERCENT)
			.f64("iowait_pct", pct(d.iowait, total), PI_FMT_PERCENT)
			.f64("busy_pct", pct(d.busy(), total), PI_FMT_PERCENT)
			.f64("user_pct", pct(d.user + d.nice, total), PI_FMT_PERCENT)
			.f64("system_pct", pct(d.system, total), PI_FMT_PERCENT)
			.f64("irq_pct", pct(d.irq + d.softirq, total), PI_FMT_PERCENT)
			.f64("steal_pct", pct(d.steal, total), PI_FMT_PERCENT);
		r.emit(host());
	}

	config cfg_;
	config act_{"{}"}; // this activation's: cfg_ with the activation's options
	resource_bpf *skel_ = nullptr;
	sdk::links links_;
	bpf_link *iter_ = nullptr; // owned by links_
	bool attached_ = false;
	bool closed_ = true; // the activation's closing sample is taken
	uint32_t target_kind_ = PI_TARGET_ALL;
	bool follow_ = false;
	bool include_self_ = false;
	accountant acct_;
	std::vector<rs_task> exits_;
	std::vector<char> buf_;
	std::vector<uint32_t> groups_;
	std::set<std::string> disks_;
	system_sample sys_prev_;
	bool have_sys_ = false;
	bool warned_approx_ = false;
	int32_t idle_cpu_ = -1;
	uint64_t mem_total_ = 0;
};

} // namespace procimage::resource

PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA(procimage::resource::resource_probe, "resource", PROCIMAGE_VERSION,
		       "CPU, memory and I/O per thread and process, sampled every interval, beside the system's",
		       PROCIMAGE_RECORD_SCHEMA);
