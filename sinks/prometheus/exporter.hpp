// SPDX-License-Identifier: Apache-2.0
//
// prometheus sink: from records to metric families. The records of the in-tree probes
// (keytime, schedule, syscall, resource, lock) and of the host become counters, gauges and
// histograms (README.md lists them); every record is counted by probe and event; the series
// of a target process are removed `expire_s` after the process ended; its gauges (which describe
// the present) as soon as it ends.
//
// Thread safety: one mutex guards the registry. record() and maintain() run on the host
// thread and hold it for one record; scrape() copies the figures under it and formats them
// outside it. Header-only so that the unit tests compile it too.
#pragma once

#include "registry.hpp"

#include "../common/format.hpp"

#include <procimage/plugin_api.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace procimage::sinks::prom {

// Read access to a record's fields by key.
class fields {
public:
	explicit fields(const pi_record &r) : r_(r) {}

	const pi_field *find(std::string_view key) const
	{
		for (uint32_t i = 0; i < r_.nfields; i++)
			if (r_.fields[i].key && key == r_.fields[i].key)
				return &r_.fields[i];
		return nullptr;
	}
	bool has(std::string_view key) const { return find(key) != nullptr; }
	// A number as a double: 0 when absent or not a number.
	double num(std::string_view key) const
	{
		const pi_field *f = find(key);
		if (!f)
			return 0;
		switch (f->type) {
		case PI_FT_U64:
		case PI_FT_BOOL: return static_cast<double>(f->v.u);
		case PI_FT_I64: return static_cast<double>(f->v.i);
		case PI_FT_F64: return f->v.d;
		default: return 0;
		}
	}
	uint64_t u64(std::string_view key) const
	{
		const pi_field *f = find(key);
		if (!f)
			return 0;
		switch (f->type) {
		case PI_FT_U64:
		case PI_FT_BOOL: return f->v.u;
		case PI_FT_I64: return f->v.i < 0 ? 0 : static_cast<uint64_t>(f->v.i);
		case PI_FT_F64: return f->v.d < 0 ? 0 : static_cast<uint64_t>(f->v.d);
		default: return 0;
		}
	}
	int64_t i64(std::string_view key) const
	{
		const pi_field *f = find(key);
		if (!f)
			return 0;
		switch (f->type) {
		case PI_FT_I64: return f->v.i;
		case PI_FT_U64:
		case PI_FT_BOOL: return static_cast<int64_t>(f->v.u);
		case PI_FT_F64: return static_cast<int64_t>(f->v.d);
		default: return 0;
		}
	}
	bool flag(std::string_view key) const { return u64(key) != 0; }
	std::string_view str(std::string_view key) const
	{
		const pi_field *f = find(key);
		return f && f->type == PI_FT_STR && f->v.s ? std::string_view(f->v.s) : std::string_view();
	}
	std::span<const uint64_t> u64v(std::string_view key) const
	{
		const pi_field *f = find(key);
		if (!f || f->type != PI_FT_U64V || !f->v.uv)
			return {};
		return {f->v.uv, f->count};
	}

private:
	const pi_record &r_;
};

struct options {
	size_t max_series = 10000;
	uint64_t expire_ns = 300ULL * 1000000000ULL;
	unsigned ncpus = 1; // CPUs online: a target's CPU use as a share of the machine
	// Whether process `pid`, started `start_boot_ns` after boot (0: unknown), still runs.
	std::function<bool(uint32_t pid, uint64_t start_boot_ns)> alive;
	uint64_t check_period_ns = 2000000000ULL; // how often maintain() asks alive()
	uint64_t maintain_period_ns = 0;          // maintain() does its work at most this often
	size_t check_batch = 256;                  // processes asked per check, at most
};

// One BPF program's kernel statistics (bpf_stats.hpp reads them).
struct bpf_prog_stats {
	std::string name;
	uint32_t id = 0;
	uint64_t run_time_ns = 0;
	uint64_t run_cnt = 0;
};

class exporter {
public:
	explicit exporter(options o) : opt_(std::move(o)), reg_(opt_.max_series)
	{
		define();
		reg_.add(*expired_, {}, 0); // counters start at 0, not when first incremented
	}

	// ------------------------------------------------------------------ host thread

	void record(const pi_record &r)
	{
		std::lock_guard lock(mu_);
		// Counted under the instance ("keytime/cpu"), understood by its plugin ("keytime").
		const std::string_view instance = r.probe ? r.probe : "";
		const std::string_view probe = pi_record_plugin(&r);
		const std::string_view event = r.event ? r.event : "";
		reg_.add(*records_, {instance, event}, 1);
		fields f(r);
		if (probe == "procimage")
			host_record(r, event, f);
		else if (probe == "keytime")
			keytime(r, event, f);
		else if (probe == "schedule")
			schedule(r, event, f);
		else if (probe == "syscall")
			syscall(r, event, f);
		else if (probe == "resource")
			resource(r, event, f);
		else if (probe == "lock")
			on_lock(r, event, f);
	}

	// Notice ended processes (alive()) and remove the series of those that ended at least
	// expire_s before `now_ns` (Unix epoch ns, the clock of the records' ts_ns).
	void maintain(uint64_t now_ns)
	{
		std::lock_guard lock(mu_);
		if (last_maintain_ns_ && now_ns < last_maintain_ns_ + opt_.maintain_period_ns)
			return;
		last_maintain_ns_ = now_ns;
		if (opt_.alive && now_ns >= last_check_ns_ + opt_.check_period_ns) {
			last_check_ns_ = now_ns;
			check_alive(now_ns);
		}
		for (auto it = owners_.begin(); it != owners_.end();) {
			const owner_state &o = it->second;
			if (o.ended && now_ns >= o.ended_ns + opt_.expire_ns) {
				drop_series(it->first);
				it = owners_.erase(it);
			} else {
				++it;
			}
		}
	}

	// ------------------------------------------------------------------ any thread

	// The exposition; `bpf` (when given) replaces the BPF program figures first.
	std::string scrape(bool openmetrics, const std::vector<bpf_prog_stats> *bpf = nullptr)
	{
		snapshot s;
		{
			std::lock_guard lock(mu_);
			if (bpf) {
				std::vector<std::pair<std::vector<std::string>, double>> time, runs;
				for (const auto &p : *bpf) {
					std::vector<std::string> l{p.name, std::to_string(p.id)};
					time.emplace_back(l, static_cast<double>(p.run_time_ns));
					runs.emplace_back(l, static_cast<double>(p.run_cnt));
				}
				reg_.replace(*bpf_time_, time);
				reg_.replace(*bpf_runs_, runs);
			}
			reg_.set(*series_, {}, static_cast<double>(reg_.series_count()));
			reg_.set(*max_series_, {}, static_cast<double>(reg_.max_series()));
			for (auto &[name, fam] : reg_.families())
				if (fam.dropped)
					reg_.set(*dropped_, {name}, static_cast<double>(fam.dropped));
			s = reg_.snap();
		}
		return render(s, openmetrics);
	}

	// A scrape took this long (seen from the next scrape on).
	void note_scrape(double seconds)
	{
		std::lock_guard lock(mu_);
		if (auto *s = reg_.at(*scrape_, {})) {
			s->value += seconds;
			s->count++;
		}
	}

	size_t series_count()
	{
		std::lock_guard lock(mu_);
		return reg_.series_count();
	}
	// Label sets refused at the cap since the start, all families.
	uint64_t dropped_series()
	{
		std::lock_guard lock(mu_);
		uint64_t n = 0;
		for (const auto &[name, fam] : reg_.families())
			n += fam.dropped;
		return n;
	}

private:
	struct owner_state {
		uint64_t start = 0; // pid_start_ns, ns since boot; 0: not known yet
		bool ended = false;
		uint64_t ended_ns = 0; // epoch ns
	};

	static constexpr double ns = 1e9;

	void define()
	{
		using T = metric_type;
		// zero_first (registry.hpp) for every count that starts when procimage starts counting:
		// not for mirrors of the kernel's lifetime counts, nor for self-metrics other than the
		// record counts (zero_first -1: the default).
		auto d = [&](const char *name, T t, const char *help, const char *unit, std::vector<std::string> labels,
			     double div = 1, bool self = false, int zero_first = -1) {
			return &reg_.define(name, t, help, unit, std::move(labels), div, self,
					    zero_first < 0 ? !self : zero_first != 0);
		};
		// self
		records_ = d("procimage_exporter_records_total", T::counter, "Records this sink received, by emitting probe and event.",
			     "", {"probe", "event"}, 1, true, 1);
		lost_ = d("procimage_lost_records_total", T::counter,
			  "Records a probe's kernel side could not queue (full ring buffer or map), by probe instance; probe=targets: processes the target map could not hold.",
			  "", {"probe"}, 1, true, 1);
		kernel_records_ = d("procimage_probe_kernel_records_total", T::counter,
				    "Ring-buffer records the host received from a probe's kernel side (known at each deactivation and at the end).",
				    "", {"probe"}, 1, true);
		probe_errors_ = d("procimage_probe_errors_total", T::counter,
				  "Records a probe could not decode and failures of its periodic work (known at the end).", "",
				  {"probe"}, 1, true);
		active_ = d("procimage_probe_active", T::gauge, "1 while the probe is attached and collecting, 0 otherwise.", "",
			    {"probe"}, 1, true);
		activations_ = d("procimage_probe_activations_total", T::counter, "Activations of the probe.", "", {"probe"}, 1,
				 true);
		series_ = d("procimage_exporter_series", T::gauge,
			    "Series this exporter holds, counted as Prometheus does (a histogram is its buckets, _sum and _count); self-metrics excluded.",
			    "", {}, 1, true);
		max_series_ = d("procimage_exporter_max_series", T::gauge, "The series cap (config max_series).", "", {}, 1, true);
		dropped_ = d("procimage_exporter_dropped_series_total", T::counter,
			     "Label sets refused because the series cap was reached, by family.", "", {"family"}, 1, true);
		expired_ = d("procimage_exporter_expired_series_total", T::counter,
			     "Series removed because their process ended expire_s earlier.", "", {}, 1, true);
		scrape_ = d("procimage_exporter_scrape_duration_seconds", T::summary,
			    "Time taken to build the exposition, per scrape.", "seconds", {}, 1, true);
		bpf_time_ = d("procimage_bpf_prog_run_seconds_total", T::counter,
			      "Time spent running each BPF program of this procimage (kernel BPF statistics; config bpf_stats).",
			      "seconds", {"prog", "id"}, ns, true);
		bpf_runs_ = d("procimage_bpf_prog_runs_total", T::counter,
			      "Runs of each BPF program of this procimage (kernel BPF statistics; config bpf_stats).", "",
			      {"prog", "id"}, 1, true);

		// keytime
		forks_ = d("procimage_forks_total", T::counter,
			   "Tasks created by target processes, by the parent's comm and kind (fork, vfork, thread).", "",
			   {"comm", "kind"});
		execs_ = d("procimage_execs_total", T::counter,
			   "exec calls of target processes, by comm after the call and result (ok, error).", "", {"comm", "result"});
		exits_ = d("procimage_process_exits_total", T::counter,
			   "Target processes that ended, by comm, killing signal (none) and exit code.", "",
			   {"comm", "signal", "exit_code"});
		thread_exits_ = d("procimage_thread_exits_total", T::counter, "Target threads that ended (last threads included), by comm.",
				  "", {"comm"});
		lifetime_ = d("procimage_process_lifetime_seconds", T::histogram,
			      "Lifetime of target processes that ended, by comm.", "seconds", {"comm"}, ns);
		oncpu_ = d("procimage_oncpu_seconds_total", T::counter,
			   "Time target threads spent on a CPU, by process (keytime with cpu: true).", "seconds", {"pid", "comm"}, ns);
		offcpu_ = d("procimage_offcpu_seconds_total", T::counter,
			    "Time target threads spent off CPU, by process and reason (keytime with cpu: true).", "seconds",
			    {"pid", "comm", "reason"}, ns);

		// schedule
		sched_delay_ = d("procimage_sched_delay_seconds", T::histogram,
				 "Scheduling delay (runnable, waiting for a CPU) of the target's threads and of every thread of the system.",
				 "seconds", {"scope", "pid", "comm"}, ns);
		sched_untimed_ = d("procimage_sched_untimed_delays_total", T::counter,
				   "Switch-ins after a wait whose start was not seen (not in the histogram).", "",
				   {"scope", "pid", "comm"});

		// syscall
		syscalls_ = d("procimage_syscalls_total", T::counter, "System calls, by scope, process and syscall.", "",
			      {"scope", "pid", "comm", "syscall"});
		syscall_errors_ = d("procimage_syscall_errors_total", T::counter,
				    "System calls that returned an error (-4095..-1), by scope, process and syscall.", "",
				    {"scope", "pid", "comm", "syscall"});
		syscall_time_ = d("procimage_syscall_seconds_total", T::counter,
				  "Time spent in system calls (entry to exit), by scope, process and syscall.", "seconds",
				  {"scope", "pid", "comm", "syscall"}, ns);
		syscall_lat_ = d("procimage_syscall_duration_seconds", T::histogram,
				 "Latency of system calls (entry to exit), all syscalls of a target process or of the system.",
				 "seconds", {"scope", "pid", "comm"}, ns);

		// resource
		cpu_ = d("procimage_cpu_seconds_total", T::counter,
			 "CPU time: a target process's own (the kernel's cumulative figure), or the whole system's busy time since the exporter started.",
			 "seconds", {"scope", "pid", "comm"}, ns, false, 0);
		cpu_mode_ = d("procimage_cpu_mode_seconds_total", T::counter, "CPU time split into user and system mode.", "seconds",
			      {"scope", "pid", "comm", "mode"}, ns);
		cpu_ratio_ = d("procimage_cpu_usage_ratio", T::gauge,
			       "CPU use in the last interval as a share of the whole machine (0..1).", "ratio",
			       {"scope", "pid", "comm"});
		cpus_ = d("procimage_cpus", T::gauge, "CPUs online.", "", {});
		mem_used_ = d("procimage_memory_used_bytes", T::gauge,
			      "Memory in use: a target process's resident set, or the system's used memory (total - available).",
			      "bytes", {"scope", "pid", "comm"});
		mem_total_ = d("procimage_memory_total_bytes", T::gauge, "Memory of the machine (MemTotal).", "bytes", {});
		rss_ = d("procimage_memory_rss_bytes", T::gauge, "Resident set of a target process, by type (anon, file, shmem).",
			 "bytes", {"pid", "comm", "type"});
		swap_ = d("procimage_memory_swap_bytes", T::gauge, "Swapped-out memory of a target process.", "bytes",
			  {"pid", "comm"});
		storage_read_ = d("procimage_storage_read_bytes_total", T::counter, "Bytes read from storage.", "bytes",
				  {"scope", "pid", "comm"});
		storage_written_ = d("procimage_storage_written_bytes_total", T::counter, "Bytes written to storage.", "bytes",
				     {"scope", "pid", "comm"});
		io_read_ = d("procimage_io_read_bytes_total", T::counter,
			     "Bytes a target process read through system calls (rchar, cumulative).", "bytes", {"pid", "comm"}, 1, false, 0);
		io_written_ = d("procimage_io_written_bytes_total", T::counter,
				"Bytes a target process wrote through system calls (wchar, cumulative).", "bytes", {"pid", "comm"}, 1, false, 0);
		ctx_ = d("procimage_context_switches_total", T::counter,
			 "Context switches of a target process, by type (voluntary, involuntary).", "", {"pid", "comm", "type"});
		faults_ = d("procimage_page_faults_total", T::counter, "Page faults of a target process, by type (minor, major).",
			    "", {"pid", "comm", "type"});
		threads_ = d("procimage_threads", T::gauge, "Threads of a target process.", "", {"pid", "comm"});

		// lock
		lock_wait_ = d("procimage_lock_wait_seconds", T::histogram,
			       "Time from a lock request to its acquisition or failure, by process and lock type.", "seconds",
			       {"pid", "comm", "lock_type"}, ns);
		lock_hold_ = d("procimage_lock_hold_seconds", T::histogram, "Time a lock was held, by process and lock type.",
			       "seconds", {"pid", "comm", "lock_type"}, ns);
		lock_acq_ = d("procimage_lock_acquisitions_total", T::counter, "Lock acquisitions, by process and lock type.", "",
			      {"pid", "comm", "lock_type"});
		lock_contended_ = d("procimage_lock_contended_total", T::counter,
				    "Lock acquisitions or failed calls that slept in a futex wait.", "", {"pid", "comm", "lock_type"});
		lock_failed_ = d("procimage_lock_failed_total", T::counter, "Lock calls that failed (trylock busy, timeouts).", "",
				 {"pid", "comm", "lock_type"});
		futex_wait_ = d("procimage_futex_wait_seconds", T::histogram, "Futex waits of the target and of the whole system.",
				"seconds", {"scope"}, ns);
		futex_wakes_ = d("procimage_futex_wakes_total", T::counter, "Futex wake calls of the target and of the whole system.",
				 "", {"scope"});
	}

	// The owner of a target series: the record's process. Notes its start; a different start
	// means the pid was reused: the earlier process's series go at once.
	uint32_t own(const pi_record &r)
	{
		if (!r.pid)
			return 0;
		auto [it, fresh] = owners_.try_emplace(r.pid);
		owner_state &o = it->second;
		if (r.pid_start_ns) {
			if (o.start && !same_start(o.start, r.pid_start_ns)) {
				drop_series(r.pid);
				o = owner_state{};
			}
			o.start = r.pid_start_ns;
		}
		return r.pid;
	}
	void drop_series(uint32_t pid)
	{
		reg_.add(*expired_, {}, static_cast<double>(reg_.remove_owner(pid)));
		process_reported_.erase(pid);
	}
	// Two readings of one process's start (ns since boot): the same within 1 ms.
	static bool same_start(uint64_t a, uint64_t b) { return (a > b ? a - b : b - a) <= 1000000; }

	void ended(const pi_record &r)
	{
		auto it = owners_.find(r.pid);
		if (it == owners_.end() || it->second.ended)
			return;
		if (r.pid_start_ns && it->second.start && !same_start(it->second.start, r.pid_start_ns))
			return; // about an earlier process with this pid
		it->second.ended = true;
		it->second.ended_ns = r.ts_ns;
		reg_.end_owner_gauges(r.pid);
	}

	void check_alive(uint64_t now_ns)
	{
		std::vector<uint32_t> pids;
		for (const auto &[pid, o] : owners_)
			if (!o.ended)
				pids.push_back(pid);
		if (pids.empty())
			return;
		std::sort(pids.begin(), pids.end());
		// round robin over the live processes, check_batch at a time
		auto from = std::lower_bound(pids.begin(), pids.end(), check_cursor_);
		size_t start = static_cast<size_t>(from - pids.begin()) % pids.size();
		size_t n = std::min(pids.size(), opt_.check_batch);
		for (size_t k = 0; k < n; k++) {
			uint32_t pid = pids[(start + k) % pids.size()];
			owner_state &o = owners_[pid];
			if (!opt_.alive(pid, o.start)) {
				o.ended = true;
				o.ended_ns = now_ns;
				reg_.end_owner_gauges(pid);
			}
			check_cursor_ = pid + 1;
		}
	}

	static std::string pid_text(uint32_t pid) { return std::to_string(pid); }
	static std::string_view comm(const pi_record &r) { return r.comm ? r.comm : ""; }

	// ------------------------------------------------------------------ host records

	void host_record(const pi_record &, std::string_view event, const fields &f)
	{
		std::string_view src = f.str("source");
		if (event == "lost") {
			reg_.set_max(*lost_, {src}, f.num("lost_total"));
		} else if (event == "summary") {
			reg_.set_max(*lost_, {src}, f.num("lost_total"));
			reg_.set_max(*kernel_records_, {src}, f.num("records"));
			reg_.set_max(*probe_errors_, {src}, f.num("errors"));
		} else if (event == "activated") {
			reg_.set_max(*lost_, {src}, 0);
			reg_.set(*active_, {src}, 1);
			reg_.add(*activations_, {src}, 1);
		} else if (event == "deactivated") {
			reg_.set(*active_, {src}, 0);
			reg_.add(*kernel_records_, {src}, f.num("records"));
		}
	}

	// ------------------------------------------------------------------ keytime

	void keytime(const pi_record &r, std::string_view event, const fields &f)
	{
		if (event == "fork" || event == "vfork" || event == "thread") {
			reg_.add(*forks_, {comm(r), event}, 1);
		} else if (event == "exec") {
			reg_.add(*execs_, {comm(r), f.i64("ret") == 0 ? "ok" : "error"}, 1);
		} else if (event == "exit") {
			reg_.add(*thread_exits_, {comm(r)}, 1);
			if (f.flag("group_dead")) {
				std::string sig = signal_name(f.u64("signal"));
				std::string code = std::to_string(f.u64("exit_code"));
				reg_.add(*exits_, {comm(r), sig, code}, 1);
				if (f.has("process_lifetime_ns"))
					reg_.observe(*lifetime_, {comm(r)}, f.u64("process_lifetime_ns"));
				own(r);
				ended(r);
			}
		} else if (event == "oncpu") {
			uint32_t o = own(r);
			reg_.add(*oncpu_, {pid_text(r.pid), comm(r)}, f.num("dur_ns"), o);
		} else if (event == "offcpu") {
			uint32_t o = own(r);
			reg_.add(*offcpu_, {pid_text(r.pid), comm(r), f.str("reason")}, f.num("dur_ns"), o);
		}
	}

	// ------------------------------------------------------------------ schedule

	void schedule(const pi_record &r, std::string_view event, const fields &f)
	{
		if (f.str("window") != "interval")
			return; // "total" repeats what the intervals already added
		auto hist = f.u64v("hist_ns");
		if (f.str("scope") == "system") {
			reg_.add_log2(*sched_delay_, {"system", "", ""}, hist.data(), hist.size(), f.num("total_ns"));
			reg_.add(*sched_untimed_, {"system", "", ""}, f.num("untimed"));
			return;
		}
		if (event == "process") {
			process_reported_[r.pid] = true;
		} else if (event != "thread" || process_reported_.count(r.pid)) {
			return; // thread figures are in their process's record when there is one
		}
		uint32_t o = own(r);
		std::string pid = pid_text(r.pid);
		reg_.add_log2(*sched_delay_, {"target", pid, comm(r)}, hist.data(), hist.size(), f.num("total_ns"), o);
		reg_.add(*sched_untimed_, {"target", pid, comm(r)}, f.num("untimed"), o);
	}

	// ------------------------------------------------------------------ syscall

	void syscall(const pi_record &r, std::string_view event, const fields &f)
	{
		const bool system = f.str("scope") == "system";
		const bool total = f.str("window") == "total";
		if (event == "totals") {
			if (total)
				return; // the intervals add up to it
			// all syscalls of a process (or of the system) in the interval: the latency
			// distribution
			auto hist = f.u64v("hist_ns");
			if (system) {
				reg_.add_log2(*syscall_lat_, {"system", "", ""}, hist.data(), hist.size(), f.num("total_ns"));
				return;
			}
			uint32_t o = own(r);
			reg_.add_log2(*syscall_lat_, {"target", pid_text(r.pid), comm(r)}, hist.data(), hist.size(),
				      f.num("total_ns"), o);
			return;
		}
		if (event != "syscall")
			return;
		std::string_view name = f.str("syscall");
		if (system) {
			// System rows come only for some syscalls in some intervals (the probe's
			// system_rows): the total rows beside them (figures since collection began) give
			// complete counts.
			if (!total)
				return;
			auto &prev = sys_cum_[f.u64("nr")];
			cumulative now{f.u64("count"), f.u64("errors"), f.u64("total_ns")};
			cumulative d = now;
			if (now.count >= prev.count && now.errors >= prev.errors && now.ns >= prev.ns)
				d = {now.count - prev.count, now.errors - prev.errors, now.ns - prev.ns};
			prev = now; // otherwise the counters were reset (a new activation): all of now is new
			reg_.add(*syscalls_, {"system", "", "", name}, static_cast<double>(d.count));
			reg_.add(*syscall_errors_, {"system", "", "", name}, static_cast<double>(d.errors));
			reg_.add(*syscall_time_, {"system", "", "", name}, static_cast<double>(d.ns));
			return;
		}
		if (total)
			return; // the target's interval rows add up to it
		uint32_t o = own(r);
		std::string pid = pid_text(r.pid);
		reg_.add(*syscalls_, {"target", pid, comm(r), name}, f.num("count"), o);
		reg_.add(*syscall_errors_, {"target", pid, comm(r), name}, f.num("errors"), o);
		reg_.add(*syscall_time_, {"target", pid, comm(r), name}, f.num("total_ns"), o);
	}

	// ------------------------------------------------------------------ resource

	void resource(const pi_record &r, std::string_view event, const fields &f)
	{
		const double interval = f.num("interval_ns");
		if (f.str("scope") == "system") {
			const double n = f.num("ncpu");
			const double cpu_time = interval * n / 100.0; // ns of CPU time per percent
			reg_.set(*cpus_, {}, n);
			reg_.set(*cpu_ratio_, {"system", "", ""}, f.num("cpu_pct") / 100.0);
			reg_.add(*cpu_, {"system", "", ""}, f.num("cpu_pct") * cpu_time);
			reg_.add(*cpu_mode_, {"system", "", "", "user"}, f.num("user_pct") * cpu_time);
			reg_.add(*cpu_mode_, {"system", "", "", "system"}, f.num("system_pct") * cpu_time);
			reg_.set(*mem_used_, {"system", "", ""}, f.num("mem_used_bytes"));
			reg_.set(*mem_total_, {}, f.num("mem_total_bytes"));
			reg_.add(*storage_read_, {"system", "", ""}, f.num("storage_read_bytes"));
			reg_.add(*storage_written_, {"system", "", ""}, f.num("storage_write_bytes"));
			return;
		}
		if (event != "process")
			return; // threads: their process's record has the sums
		uint32_t o = own(r);
		const std::string pid = pid_text(r.pid);
		const std::string_view c = comm(r);
		reg_.set_max(*cpu_, {"target", pid, c}, f.num("cpu_total_ns"), o);
		reg_.add(*cpu_mode_, {"target", pid, c, "user"}, f.num("user_ns"), o);
		reg_.add(*cpu_mode_, {"target", pid, c, "system"}, f.num("system_ns"), o);
		reg_.set(*cpu_ratio_, {"target", pid, c},
			 interval > 0 ? f.num("cpu_ns") / interval / std::max(1u, opt_.ncpus) : 0.0, o);
		reg_.set(*mem_used_, {"target", pid, c}, f.num("rss_bytes"), o);
		reg_.set(*rss_, {pid, c, "anon"}, f.num("rss_anon_bytes"), o);
		reg_.set(*rss_, {pid, c, "file"}, f.num("rss_file_bytes"), o);
		reg_.set(*rss_, {pid, c, "shmem"}, f.num("rss_shmem_bytes"), o);
		reg_.set(*swap_, {pid, c}, f.num("swap_bytes"), o);
		reg_.add(*storage_read_, {"target", pid, c}, f.num("storage_read_bytes"), o);
		reg_.add(*storage_written_, {"target", pid, c}, f.num("storage_write_bytes"), o);
		reg_.set_max(*io_read_, {pid, c}, f.num("read_total_bytes"), o);
		reg_.set_max(*io_written_, {pid, c}, f.num("write_total_bytes"), o);
		reg_.add(*ctx_, {pid, c, "voluntary"}, f.num("voluntary_switches"), o);
		reg_.add(*ctx_, {pid, c, "involuntary"}, f.num("involuntary_switches"), o);
		reg_.add(*faults_, {pid, c, "minor"}, f.num("minor_faults"), o);
		reg_.add(*faults_, {pid, c, "major"}, f.num("major_faults"), o);
		reg_.set(*threads_, {pid, c}, f.num("threads"), o);
		if (f.flag("exited"))
			ended(r);
	}

	// ------------------------------------------------------------------ lock

	void on_lock(const pi_record &r, std::string_view event, const fields &f)
	{
		if (f.str("window") != "interval")
			return;
		if (event == "process") { // per process and lock type, all locks (lock records stop at `top`)
			uint32_t o = own(r);
			const std::string pid = pid_text(r.pid);
			const std::string_view c = comm(r), type = f.str("lock_type");
			auto wait = f.u64v("wait_hist_ns"), hold = f.u64v("hold_hist_ns");
			reg_.add(*lock_acq_, {pid, c, type}, f.num("acquisitions"), o);
			reg_.add(*lock_contended_, {pid, c, type}, f.num("contended"), o);
			reg_.add(*lock_failed_, {pid, c, type}, f.num("failed"), o);
			reg_.add_log2(*lock_wait_, {pid, c, type}, wait.data(), wait.size(), f.num("wait_total_ns"), o);
			reg_.add_log2(*lock_hold_, {pid, c, type}, hold.data(), hold.size(), f.num("hold_total_ns"), o);
		} else if (event == "futex_summary") {
			std::string_view scope = f.str("scope");
			auto wait = f.u64v("wait_hist_ns");
			reg_.add_log2(*futex_wait_, {scope}, wait.data(), wait.size(), f.num("wait_total_ns"));
			reg_.add(*futex_wakes_, {scope}, f.num("wakes"));
		}
	}

	options opt_;
	std::mutex mu_;
	registry reg_;
	std::unordered_map<uint32_t, owner_state> owners_;
	std::unordered_map<uint32_t, bool> process_reported_;       // schedule: pids with process records
	struct cumulative {
		uint64_t count = 0, errors = 0, ns = 0;
	};
	std::unordered_map<uint64_t, cumulative> sys_cum_; // syscall slot -> its system total row's figures
	uint64_t last_check_ns_ = 0;
	uint64_t last_maintain_ns_ = 0;
	uint32_t check_cursor_ = 0;

	family *records_, *lost_, *kernel_records_, *probe_errors_, *active_, *activations_, *series_, *max_series_,
		*dropped_, *expired_, *scrape_, *bpf_time_, *bpf_runs_;
	family *forks_, *execs_, *exits_, *thread_exits_, *lifetime_, *oncpu_, *offcpu_;
	family *sched_delay_, *sched_untimed_;
	family *syscalls_, *syscall_errors_, *syscall_time_, *syscall_lat_;
	family *cpu_, *cpu_mode_, *cpu_ratio_, *cpus_, *mem_used_, *mem_total_, *rss_, *swap_, *storage_read_,
		*storage_written_, *io_read_, *io_written_, *ctx_, *faults_, *threads_;
	family *lock_wait_, *lock_hold_, *lock_acq_, *lock_contended_, *lock_failed_, *futex_wait_, *futex_wakes_;
};

} // namespace procimage::sinks::prom
