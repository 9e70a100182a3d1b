// SPDX-License-Identifier: Apache-2.0
//
// schedule probe, user side without the kernel: turns the cumulative figures the BPF program
// keeps (per target thread, per CPU for the whole system) into interval and total records.
// Header-only so that the unit tests can drive it with canned snapshots.
#pragma once

#include "schedule.h"

#include <procimage/sdk.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace procimage::schedule {

// Figures of one window (an interval, or the whole activation).
struct figures {
	uint64_t count = 0;
	uint64_t sum_ns = 0;
	uint64_t max_ns = 0;
	uint64_t min_ns = 0;
	uint64_t fallback = 0;
	uint64_t untimed = 0;
	bool extremes = false; // max_ns / min_ns hold at least one delay
	std::array<uint64_t, SC_HIST_SLOTS> hist{};

	// Add what happened between two cumulative snapshots (count, sum, histogram).
	void add_between(const sc_stats &now, const sc_stats &before)
	{
		if (now.count < before.count) // not the same series: take all of it
			return add_between(now, sc_stats{});
		count += now.count - before.count;
		sum_ns += now.sum_ns - std::min(now.sum_ns, before.sum_ns);
		fallback += now.fallback - std::min(now.fallback, before.fallback);
		untimed += now.untimed - std::min(now.untimed, before.untimed);
		for (size_t i = 0; i < SC_HIST_SLOTS; i++)
			hist[i] += now.hist[i] - std::min(now.hist[i], before.hist[i]);
	}
	void merge_extremes(uint64_t max, uint64_t min)
	{
		if (!extremes) {
			max_ns = max;
			min_ns = min;
			extremes = true;
			return;
		}
		max_ns = std::max(max_ns, max);
		min_ns = std::min(min_ns, min);
	}
	void merge(const figures &o)
	{
		count += o.count;
		sum_ns += o.sum_ns;
		fallback += o.fallback;
		untimed += o.untimed;
		for (size_t i = 0; i < SC_HIST_SLOTS; i++)
			hist[i] += o.hist[i];
		if (o.extremes)
			merge_extremes(o.max_ns, o.min_ns);
	}
	static figures of(const sc_stats &s)
	{
		figures f;
		f.add_between(s, sc_stats{});
		if (s.count)
			f.merge_extremes(s.max_ns, s.min_ns);
		return f;
	}
	bool any() const { return count || untimed; }
	uint64_t avg_ns() const { return count ? sum_ns / count : 0; }
	// Largest / smallest delay. If a window's delays all ended within microseconds of its
	// boundary, their extremes may have gone to the neighbouring window: fall back to the
	// average (exact for a single delay).
	uint64_t max() const { return extremes ? max_ns : avg_ns(); }
	uint64_t min() const { return extremes ? min_ns : avg_ns(); }
	std::vector<uint64_t> hist_vec() const { return {hist.begin(), hist.end()}; }
};

inline const char *policy_name(uint32_t p)
{
	switch (p) {
	case 0: return "normal";
	case 1: return "fifo";
	case 2: return "rr";
	case 3: return "batch";
	case 5: return "idle";
	case 6: return "deadline";
	case 7: return "ext";
	default: return "unknown";
	}
}

inline std::string cstr(const char *s, size_t max) { return std::string(s, strnlen(s, max)); }

class aggregator {
public:
	struct options {
		bool system = true;  // whole-system figures collected
		uint32_t top = 20;   // thread records per report, largest delay sum first; 0 = all
		bool groups = false; // process records (the target names thread groups)
		int32_t idle_cpu = -1;
		uint32_t cpus = 1;   // CPUs online, for the system record
	};

	aggregator(const pi_host &host, options o) : host_(host), opt_(o) {}

	void set_options(options o) { opt_ = o; }
	const options &opts() const { return opt_; }

	// A new measurement begins (an activation): forget everything.
	void start(uint64_t now_boot_ns)
	{
		threads_.clear();
		retired_.clear();
		procs_.clear();
		sys_before_ = sc_stats{};
		sys_interval_ = figures{};
		recovered_interval_ = recovered_total_ = 0;
		start_ns_ = last_report_ns_ = now_boot_ns;
		current_ = 1;
		closing_ = 0;
		started_ = true;
	}
	bool started() const { return started_; }

	// The epoch the kernel writes now; advance() closes it and returns the next one, which the
	// caller hands to the kernel before reading the maps.
	uint64_t epoch() const { return current_; }
	uint64_t advance()
	{
		closing_ = current_++;
		return current_;
	}

	// Whole-system figures read at a tick (after advance()), one entry per CPU.
	void system(const std::vector<sc_cpu> &cpus)
	{
		sc_stats now{};
		uint64_t recovered = 0;
		for (const auto &c : cpus) {
			recovered += c.recovered;
			if (c.total.count) {
				now.max_ns = now.count ? std::max(now.max_ns, c.total.max_ns) : c.total.max_ns;
				now.min_ns = now.count ? std::min(now.min_ns, c.total.min_ns) : c.total.min_ns;
			}
			now.count += c.total.count;
			now.sum_ns += c.total.sum_ns;
			now.fallback += c.total.fallback;
			now.untimed += c.total.untimed;
			for (size_t i = 0; i < SC_HIST_SLOTS; i++)
				now.hist[i] += c.total.hist[i];
			for (const auto &w : c.win)
				if (w.epoch && w.epoch == closing_)
					sys_interval_.merge_extremes(w.max_ns, w.min_ns);
		}
		sys_interval_.add_between(now, sys_before_);
		sys_before_ = now;
		recovered_interval_ += recovered - std::min(recovered, recovered_total_);
		recovered_total_ = recovered;
	}

	// One target thread's entry, read from the kernel map at a tick (after advance()).
	void thread(const sc_thread &t) { apply(t, false); }
	// A thread's final figures: its entry left the kernel map (record SC_THREAD_END).
	void thread_end(const sc_thread &t) { apply(t, true); }

	// Emit the interval that ends now: `interval` rows for the system, the processes and (at
	// most `top`) threads with delays in it, then `total` rows (the figures since start()) for
	// the same ones. With final (the activation ends), the totals cover every thread and
	// process, and the aggregator stops; an interval without any delay is then left out (the
	// host may already have reported the last one just before detaching).
	void report(uint64_t now_boot_ns, bool final)
	{
		if (!started_)
			return;
		uint64_t window = now_boot_ns - std::min(now_boot_ns, last_report_ns_);
		uint64_t whole = now_boot_ns - std::min(now_boot_ns, start_ns_);
		figures sys_total = figures::of(sys_before_);
		std::vector<const thread_acc *> live;
		for (auto &[_, a] : threads_)
			if (a.interval.any())
				live.push_back(&a);
		bool empty = live.empty() && !sys_interval_.any();
		if (!(final && empty)) {
			std::vector<const thread_acc *> shown = pick(live, [](const thread_acc *x) { return x->interval.sum_ns; });
			if (opt_.system)
				emit_system("interval", window, now_boot_ns, sys_interval_, recovered_interval_);
			if (opt_.groups)
				for (auto &[pid, p] : procs_)
					if (p.interval.any())
						emit_process("interval", window, now_boot_ns, p, p.interval, sys_interval_);
			for (const auto *a : shown)
				emit_thread("interval", window, now_boot_ns, a->last, a->interval, sys_interval_);
			if (!final) {
				// running totals of the same system, processes and threads
				if (opt_.system)
					emit_system("total", whole, now_boot_ns, sys_total, recovered_total_);
				if (opt_.groups)
					for (auto &[pid, p] : procs_)
						if (p.interval.any())
							emit_process("total", whole, now_boot_ns, p, p.total, sys_total);
				for (const auto *a : shown)
					emit_thread("total", whole, now_boot_ns, a->last, figures::of(a->last.total), sys_total);
			}
		}
		sys_interval_ = figures{};
		recovered_interval_ = 0;
		for (auto &[_, p] : procs_)
			p.interval = figures{};
		for (auto it = threads_.begin(); it != threads_.end();) {
			it->second.interval = figures{};
			if (it->second.ended) {
				retire(it->second.last);
				it = threads_.erase(it);
			} else {
				++it;
			}
		}
		last_report_ns_ = now_boot_ns;
		if (!final)
			return;

		if (opt_.system)
			emit_system("total", whole, now_boot_ns, sys_total, recovered_total_);
		if (opt_.groups)
			for (auto &[pid, p] : procs_)
				if (p.total.any())
					emit_process("total", whole, now_boot_ns, p, p.total, sys_total);
		std::vector<const sc_thread *> all;
		for (auto &[_, a] : threads_)
			all.push_back(&a.last);
		for (auto &t : retired_)
			all.push_back(&t);
		all.erase(std::remove_if(all.begin(), all.end(), [](const sc_thread *t) { return !t->total.count && !t->total.untimed; }),
			  all.end());
		for (const auto *t : pick(all, [](const sc_thread *x) { return x->total.sum_ns; }))
			emit_thread("total", whole, now_boot_ns, *t, figures::of(t->total), sys_total);
		started_ = false;
	}

private:
	struct thread_acc {
		sc_thread last{};  // latest snapshot: identity and cumulative figures
		figures interval;  // since the last report
		uint64_t merged_epoch = 0; // newest window whose extremes are already in a report
		bool ended = false;
	};
	struct process_acc {
		uint32_t pid = 0;
		uint64_t pid_start_ns = 0;
		std::string comm;
		bool leader_comm = false;
		std::set<uint32_t> tids; // threads that ever had a delay
		figures interval, total;
	};

	void apply(const sc_thread &t, bool from_end)
	{
		auto key = std::make_pair(t.tid, t.start_ns);
		auto &a = threads_[key];
		figures delta;
		delta.add_between(t.total, a.last.total);
		uint64_t newest = a.merged_epoch;
		for (const auto &w : t.win) {
			if (!w.epoch || w.epoch <= a.merged_epoch)
				continue; // already reported at an earlier tick
			// At a tick, the interval that just closed; for a thread that ended between ticks,
			// the interval under way and the one before (its delays after the last read).
			bool take = from_end ? (w.epoch + 1 >= current_) : (w.epoch == closing_);
			if (take && delta.count) {
				delta.merge_extremes(w.max_ns, w.min_ns);
				newest = std::max<uint64_t>(newest, w.epoch);
			}
		}
		if (!from_end && closing_ > newest)
			newest = closing_;
		a.merged_epoch = newest;
		a.interval.merge(delta);
		a.last = t;
		a.ended = a.ended || from_end;
		if (opt_.groups && t.tid) {
			auto &p = procs_[t.pid];
			p.pid = t.pid;
			p.pid_start_ns = t.pid_start_ns;
			// the process is named after its main thread, as it is now (after an exec)
			if (t.tid == t.pid || !p.leader_comm) {
				p.comm = cstr(t.comm, sizeof t.comm);
				p.leader_comm = t.tid == t.pid;
			}
			p.tids.insert(t.tid);
			p.interval.merge(delta);
			figures d = delta;
			d.extremes = false;
			p.total.merge(d);
			if (t.total.count)
				p.total.merge_extremes(t.total.max_ns, t.total.min_ns);
		}
	}

	// Keep the final figures of ended threads for the totals; with a top-N limit, only as many
	// as could ever be shown.
	void retire(const sc_thread &t)
	{
		if (!t.total.count && !t.total.untimed)
			return;
		retired_.push_back(t);
		if (opt_.top && retired_.size() > 2 * static_cast<size_t>(opt_.top)) {
			std::sort(retired_.begin(), retired_.end(),
				  [](const sc_thread &a, const sc_thread &b) { return a.total.sum_ns > b.total.sum_ns; });
			retired_.resize(opt_.top);
		}
	}

	template <typename T, typename Key> std::vector<T> pick(std::vector<T> v, Key key) const
	{
		std::sort(v.begin(), v.end(), [&](const T &a, const T &b) {
			if (key(a) != key(b))
				return key(a) > key(b);
			return tid_of(a) < tid_of(b);
		});
		if (opt_.top && v.size() > opt_.top)
			v.resize(opt_.top);
		return v;
	}
	static uint32_t tid_of(const thread_acc *a) { return a->last.tid; }
	static uint32_t tid_of(const sc_thread *t) { return t->tid; }

	sdk::record make(const char *event, uint64_t now_boot_ns)
	{
		sdk::record r("schedule", event);
		r.ts(now_boot_ns + host_.boot_to_epoch_ns);
		return r;
	}

	// Fields every record has, in the order the stdout sink shows them.
	static void figures_fields(sdk::record &r, const char *scope, const char *window, uint64_t interval_ns,
				   const figures &f)
	{
		r.str("scope", scope)
			.str("window", window)
			.u64("interval_ns", interval_ns, PI_FMT_DURATION_NS)
			.u64("count", f.count)
			.u64("avg_ns", f.avg_ns(), PI_FMT_DURATION_NS)
			.u64("max_ns", f.max(), PI_FMT_DURATION_NS)
			.u64("min_ns", f.min(), PI_FMT_DURATION_NS)
			.u64("total_ns", f.sum_ns, PI_FMT_DURATION_NS);
	}
	static void tail_fields(sdk::record &r, const figures &f)
	{
		r.u64("untimed", f.untimed).u64("fallback", f.fallback).u64v("hist_ns", f.hist_vec(), PI_FMT_LOG2_HIST);
	}
	static double pct(uint64_t part, uint64_t whole) { return whole ? 100.0 * part / whole : 0.0; }

	// The whole system's figures of the same window, beside a target's.
	void beside(sdk::record &r, const figures &sys)
	{
		if (!opt_.system)
			return;
		r.u64("sys_avg_ns", sys.avg_ns(), PI_FMT_DURATION_NS)
			.u64("sys_max_ns", sys.max(), PI_FMT_DURATION_NS)
			.u64("sys_min_ns", sys.min(), PI_FMT_DURATION_NS);
	}

	void emit_system(const char *window, uint64_t interval_ns, uint64_t now, const figures &f, uint64_t recovered)
	{
		auto r = make("system", now);
		r.ids(0, 0).comm("");
		figures_fields(r, "system", window, interval_ns, f);
		r.f64("waiting_avg", interval_ns ? static_cast<double>(f.sum_ns) / interval_ns : 0.0)
			.u64("cpus", opt_.cpus)
			.u64("recovered", recovered);
		tail_fields(r, f);
		r.emit(host_);
	}

	void emit_process(const char *window, uint64_t interval_ns, uint64_t now, const process_acc &p,
			  const figures &f, const figures &sys)
	{
		auto r = make("process", now);
		r.ids(p.pid, 0).comm(p.comm).pid_start(p.pid_start_ns);
		figures_fields(r, "process", window, interval_ns, f);
		r.f64("wait_pct", pct(f.sum_ns, interval_ns), PI_FMT_PERCENT).u64("threads", p.tids.size());
		beside(r, sys);
		tail_fields(r, f);
		r.emit(host_);
	}

	void emit_thread(const char *window, uint64_t interval_ns, uint64_t now, const sc_thread &t, const figures &f,
			 const figures &sys)
	{
		auto r = make("thread", now);
		r.ids(t.pid, t.tid).comm(cstr(t.comm, sizeof t.comm)).pid_start(t.pid_start_ns);
		if (t.tid == 0 && opt_.idle_cpu >= 0)
			r.cpu(opt_.idle_cpu);
		figures_fields(r, "thread", window, interval_ns, f);
		r.f64("wait_pct", pct(f.sum_ns, interval_ns), PI_FMT_PERCENT)
			.i64("prio", t.prio)
			.i64("nice", t.static_prio - 120)
			.str("policy", policy_name(t.policy));
		beside(r, sys);
		tail_fields(r, f);
		r.emit(host_);
	}

	const pi_host &host_;
	options opt_;
	bool started_ = false;
	uint64_t start_ns_ = 0, last_report_ns_ = 0;
	uint64_t current_ = 1, closing_ = 0;
	std::map<std::pair<uint32_t, uint64_t>, thread_acc> threads_; // (tid, start_ns)
	std::vector<sc_thread> retired_;
	std::map<uint32_t, process_acc> procs_;
	sc_stats sys_before_{};
	figures sys_interval_;
	uint64_t recovered_interval_ = 0, recovered_total_ = 0;
};

} // namespace procimage::schedule
