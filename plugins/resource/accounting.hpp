// SPDX-License-Identifier: Apache-2.0
//
// resource probe: from cumulative kernel counters to per-interval figures. No BPF here: the
// samples and exit records (resource.h) come in, thread and process results go out, so the
// arithmetic is tested on canned records (tests/unit/test_resource_*.cpp).
//
// Rules:
//  - A thread's interval runs from its previous sample (or its start, if it was born since the
//    previous tick) to this sample (or its exit). Its deltas are the counters' differences.
//  - A thread first seen without being new (the baseline taken at attach, a thread that joined
//    the target) only sets the baseline: no record until the next tick.
//  - A process's cumulative totals are the kernel's (what /proc/<pid>/stat and /proc/<pid>/io
//    add up): the signal_struct's sums for released threads plus every thread still listed,
//    zombies included (for I/O the kernel also adds the children it reaped). Its interval
//    figures are the sums of its threads' interval figures: its own work only. When the process
//    ends (the last thread's exit record), its final totals are the last ones plus the deltas
//    of the threads that ended since.
//  - user/system: the tick-sampled utime/stime only split the exact runtime (as the kernel does
//    for /proc), monotonically, per thread and per process.
#pragma once

#include "resource.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace procimage::resource {

// Field-wise helpers on struct rs_counters (every field is a u64 counter), through member
// pointers: no type punning.
using counter_field = __u64 rs_counters::*;
constexpr counter_field counter_fields[] = {
	&rs_counters::runtime_ns, &rs_counters::utime_ns,  &rs_counters::stime_ns,   &rs_counters::nvcsw,
	&rs_counters::nivcsw,     &rs_counters::min_flt,   &rs_counters::maj_flt,    &rs_counters::rchar,
	&rs_counters::wchar,      &rs_counters::syscr,     &rs_counters::syscw,      &rs_counters::read_bytes,
	&rs_counters::write_bytes, &rs_counters::cancelled_write_bytes,
};
static_assert(sizeof(counter_fields) / sizeof(counter_fields[0]) * sizeof(__u64) == sizeof(rs_counters),
	      "every field of rs_counters is listed in counter_fields");

inline rs_counters sum(const rs_counters &a, const rs_counters &b)
{
	rs_counters r{};
	for (auto f : counter_fields)
		r.*f = a.*f + b.*f;
	return r;
}

// a - b, per field, never below zero
inline rs_counters minus(const rs_counters &a, const rs_counters &b)
{
	rs_counters r{};
	for (auto f : counter_fields)
		r.*f = a.*f > b.*f ? a.*f - b.*f : 0;
	return r;
}

inline rs_counters maxed(const rs_counters &a, const rs_counters &b)
{
	rs_counters r{};
	for (auto f : counter_fields)
		r.*f = std::max(a.*f, b.*f);
	return r;
}

inline bool all_zero(const rs_counters &a)
{
	for (auto f : counter_fields)
		if (a.*f)
			return false;
	return true;
}

// The exact runtime split into user and system time in the proportion of the tick samples,
// never moving either part backwards (the kernel's rule for /proc/<pid>/stat).
struct cputime_split {
	uint64_t user = 0;
	uint64_t system = 0;

	void update(uint64_t rtime, uint64_t ticks_user, uint64_t ticks_system)
	{
		if (user + system >= rtime)
			return;
		uint64_t sys;
		if (ticks_system == 0)
			sys = 0;
		else if (ticks_user == 0)
			sys = rtime;
		else
			sys = static_cast<uint64_t>(static_cast<unsigned __int128>(ticks_system) * rtime /
						    (static_cast<unsigned __int128>(ticks_system) + ticks_user));
		sys = std::min(std::max(sys, system), rtime);
		uint64_t usr = rtime - sys;
		if (usr < user) {
			usr = user;
			sys = rtime - usr;
		}
		user = usr;
		system = sys;
	}
};

struct memory {
	bool valid = false;
	bool approx = false; // the counters' global parts only
	uint64_t file = 0, anon = 0, shmem = 0, swap = 0; // bytes
	uint64_t rss() const { return file + anon + shmem; }
};

struct thread_result {
	uint32_t pid = 0, tid = 0;
	std::string comm;
	uint32_t cpu = 0;       // runs or last ran on
	uint64_t ts = 0;        // boot ns: sample or exit
	uint64_t pid_start = 0; // process start, boot ns
	uint64_t interval_ns = 0;
	rs_counters delta{};
	uint64_t user_ns = 0, system_ns = 0; // the interval's runtime, split
	rs_counters total{};                  // the thread's own cumulative counters
	memory mem;                           // its process's (shared mm)
	bool exited = false;
	bool on_cpu = false;
	bool target = false; // false: a companion thread of a thread target, not reported
};

struct process_result {
	uint32_t pid = 0;
	std::string comm;
	uint64_t ts = 0;
	uint64_t pid_start = 0;
	uint64_t interval_ns = 0;
	rs_counters delta{};
	uint64_t user_ns = 0, system_ns = 0;
	rs_counters total{};
	memory mem;
	uint32_t threads = 0; // live threads when sampled
	bool exited = false;
};

struct tick_result {
	std::vector<thread_result> threads;
	std::vector<process_result> processes; // sorted by pid
};

class accountant {
public:
	explicit accountant(uint64_t page_size = 4096) : page_size_(page_size) {}

	// Forget everything: the next update() only takes the baseline.
	void reset()
	{
		threads_.clear();
		procs_.clear();
		last_ = 0;
		started_ = false;
	}

	bool started() const { return started_; }
	uint64_t last() const { return last_; } // boot time of the previous iteration

	// For the closing sample (taken when the target is no longer in the kernel's maps): was
	// this thread followed, and was it a target or a companion? -1: not followed.
	int thread_target(uint32_t tid, uint64_t start_ns) const
	{
		auto it = threads_.find(tid);
		if (it == threads_.end() || it->second.start != start_ns)
			return -1;
		return it->second.target ? 1 : 0;
	}
	bool known_process(uint32_t pid) const { return procs_.count(pid) != 0; }

	// One tick. `now` is the boot time at which the iteration began; `samples` the iterator's
	// records (have_samples == false when none could be taken, e.g. after detach: then only
	// the exits are accounted); `exits` the exit records received since the previous call.
	tick_result update(uint64_t now, const std::vector<rs_task> &samples, bool have_samples,
			   std::vector<rs_task> exits)
	{
		tick_result out;
		out.threads.reserve(samples.size() + exits.size());
		const bool baseline = !started_;
		std::sort(exits.begin(), exits.end(),
			  [](const rs_task &a, const rs_task &b) { return a.h.ts_boot_ns < b.h.ts_boot_ns; });
		exited_.clear();
		touched_.clear();
		for (const auto &e : exits)
			exited_.insert(e.h.tid);

		// threads
		for (const auto &s : samples) {
			touched_.insert(s.h.tid);
			if (exited_.count(s.h.tid) || (s.flags & RS_F_ZOMBIE))
				continue; // reported from its exit record
			account_thread(s, true, baseline, out.threads);
		}
		for (const auto &e : exits) {
			touched_.insert(e.h.tid);
			account_thread(e, false, baseline, out.threads);
		}
		if (have_samples)
			age(threads_, touched_);
		std::sort(out.threads.begin(), out.threads.end(), [](const thread_result &a, const thread_result &b) {
			return a.pid != b.pid ? a.pid < b.pid : a.tid != b.tid ? a.tid < b.tid : a.ts < b.ts;
		});

		// processes: samples, last-thread exits and thread results, each sorted by pid, walked
		// together one process at a time
		by_pid_.clear();
		for (const auto &s : samples)
			by_pid_.push_back(&s);
		std::stable_sort(by_pid_.begin(), by_pid_.end(),
				 [](const rs_task *a, const rs_task *b) { return a->h.pid < b->h.pid; });
		dead_.clear();
		for (const auto &e : exits)
			if (e.flags & RS_F_GROUP_DEAD)
				dead_.push_back(&e);
		std::stable_sort(dead_.begin(), dead_.end(),
				 [](const rs_task *a, const rs_task *b) { return a->h.pid < b->h.pid; });
		seen_.clear();
		size_t si = 0, di = 0, ti = 0;
		const size_t ns = by_pid_.size(), nd = dead_.size(), nt = out.threads.size();
		while (si < ns || di < nd || ti < nt) {
			uint32_t pid = UINT32_MAX;
			if (si < ns)
				pid = std::min(pid, by_pid_[si]->h.pid);
			if (di < nd)
				pid = std::min(pid, dead_[di]->h.pid);
			if (ti < nt)
				pid = std::min(pid, out.threads[ti].pid);
			group g;
			g.samples = by_pid_.data() + si;
			while (si < ns && by_pid_[si]->h.pid == pid)
				si++, g.n_samples++;
			while (di < nd && dead_[di]->h.pid == pid)
				g.dead = dead_[di++]; // (one per process; the last if ever more)
			g.first_result = ti;
			while (ti < nt && out.threads[ti].pid == pid)
				ti++, g.n_results++;
			seen_.insert(pid);
			account_process(pid, g, now, baseline, out);
		}
		if (have_samples)
			age(procs_, seen_);

		if (have_samples) {
			last_ = now;
			started_ = true;
		}
		return out;
	}

private:
	struct thread_state {
		uint64_t start = 0;
		uint64_t ts = 0;
		rs_counters last{};
		cputime_split split;
		uint32_t unseen = 0;
		bool target = false;
	};
	struct process_state {
		uint64_t start = 0;
		uint64_t ts = 0;
		rs_counters total{};
		memory mem;
		std::string comm;
		uint32_t unseen = 0;
	};
	struct group {
		const rs_task *const *samples = nullptr; // the process's samples
		size_t n_samples = 0;
		const rs_task *dead = nullptr; // the exit record of the last thread
		size_t first_result = 0;       // its thread results: [first_result, +n_results)
		size_t n_results = 0;
		const rs_task *sample(size_t i) const { return samples[i]; }
	};

	// Drop state for tasks not seen for a few ticks (their exit record was lost: counted by
	// the kernel side in pi_lost). One missed tick is normal: a task that exits just before
	// the iteration is gone from it while its exit record is still in the ring buffer.
	template <typename M> static void age(M &m, const std::unordered_set<uint32_t> &touched)
	{
		for (auto it = m.begin(); it != m.end();) {
			if (touched.count(it->first)) {
				it->second.unseen = 0;
				++it;
			} else if (++it->second.unseen > 2) {
				it = m.erase(it);
			} else {
				++it;
			}
		}
	}

	memory mem_of(const rs_task &r) const
	{
		memory m;
		if (!(r.flags & RS_F_RSS))
			return m;
		m.valid = true;
		m.approx = (r.flags & RS_F_RSS_APPROX) != 0;
		auto b = [&](int i) { return static_cast<uint64_t>(std::max<int64_t>(r.rss_pages[i], 0)) * page_size_; };
		m.file = b(RS_MM_FILE);
		m.anon = b(RS_MM_ANON);
		m.shmem = b(RS_MM_SHMEM);
		m.swap = b(RS_MM_SWAP);
		return m;
	}

	void account_thread(const rs_task &r, bool live, bool baseline, std::vector<thread_result> &out)
	{
		const uint32_t tid = r.h.tid;
		auto it = threads_.find(tid);
		if (it != threads_.end() && it->second.start != r.start_ns) {
			threads_.erase(it); // the id was reused
			it = threads_.end();
		}
		thread_state fresh;
		thread_state *st;
		if (it == threads_.end()) {
			bool newborn = !baseline && r.start_ns > last_;
			if (!newborn) {
				// first sight of a thread that is not new: baseline only
				if (live) {
					thread_state &n = threads_[tid];
					n.start = r.start_ns;
					n.ts = r.h.ts_boot_ns;
					n.last = r.self;
					n.split.update(r.self.runtime_ns, r.self.utime_ns, r.self.stime_ns);
					n.target = (r.flags & RS_F_TARGET) != 0;
				}
				return;
			}
			fresh.start = r.start_ns;
			fresh.ts = r.start_ns;
			st = &fresh;
		} else {
			st = &it->second;
		}

		thread_result t;
		t.pid = r.h.pid;
		t.tid = tid;
		t.comm.assign(r.h.comm, strnlen(r.h.comm, sizeof r.h.comm));
		t.cpu = r.h.cpu;
		t.ts = r.h.ts_boot_ns;
		t.pid_start = r.h.pid_start_ns;
		t.interval_ns = r.h.ts_boot_ns > st->ts ? r.h.ts_boot_ns - st->ts : 0;
		t.delta = minus(r.self, st->last);
		t.total = maxed(r.self, st->last);
		cputime_split before = st->split;
		st->split.update(t.total.runtime_ns, t.total.utime_ns, t.total.stime_ns);
		t.user_ns = st->split.user - before.user;
		t.system_ns = st->split.system - before.system;
		t.exited = !live;
		t.on_cpu = live && (r.flags & RS_F_ON_CPU);
		t.target = (r.flags & RS_F_TARGET) != 0;
		out.push_back(std::move(t));

		if (live) {
			cputime_split split = st->split;
			rs_counters last = out.back().total;
			threads_[tid] = thread_state{r.start_ns, r.h.ts_boot_ns, last, split, 0,
						     (r.flags & RS_F_TARGET) != 0};
		} else if (it != threads_.end()) {
			threads_.erase(it);
		}
	}

	void account_process(uint32_t pid, const group &g, uint64_t now, bool baseline, tick_result &out)
	{
		auto it = procs_.find(pid);
		const rs_task *leader = nullptr;
		uint64_t pid_start = 0;
		for (size_t i = 0; i < g.n_samples; i++) {
			pid_start = g.sample(i)->h.pid_start_ns;
			if (g.sample(i)->flags & RS_F_LEADER)
				leader = g.sample(i);
		}
		if (g.dead)
			pid_start = g.dead->h.pid_start_ns;
		if (!pid_start && g.n_results)
			pid_start = out.threads[g.first_result].pid_start;
		if (it != procs_.end() && it->second.start != pid_start) {
			procs_.erase(it); // the id was reused
			it = procs_.end();
		}
		const bool have_prev = it != procs_.end();
		process_state prev = have_prev ? it->second : process_state{};

		std::string comm;
		auto comm_of = [](const rs_task &r) { return std::string(r.h.comm, strnlen(r.h.comm, sizeof r.h.comm)); };
		if (leader)
			comm = comm_of(*leader);
		else if (g.dead)
			comm = comm_of(*g.dead);
		else if (have_prev)
			comm = prev.comm;
		else if (g.n_samples)
			comm = comm_of(*g.sample(0));
		else if (g.n_results)
			comm = out.threads[g.first_result].comm;

		const bool exited = g.dead != nullptr;
		bool any_live = false;
		for (size_t i = 0; i < g.n_samples; i++)
			any_live |= !(g.sample(i)->flags & RS_F_ZOMBIE);
		if (g.n_samples && !any_live && !exited && g.n_results == 0)
			return; // a dead process not reaped yet: its end comes (or came) from its exit record
		const bool live_view = g.n_samples && any_live && !exited;

		// the totals: the kernel's own while the process lives, else the last ones plus the
		// deltas of the threads that ended since
		rs_counters total{};
		memory mem = prev.mem;
		uint32_t live_threads = 0;
		if (live_view) {
			if (leader)
				total = leader->dead;
			const rs_task *mem_src = nullptr;
			for (size_t i = 0; i < g.n_samples; i++) {
				const rs_task *s = g.sample(i);
				total = sum(total, s->self);
				if (!(s->flags & RS_F_ZOMBIE))
					live_threads++;
				if ((s->flags & RS_F_RSS) && (!mem_src || s == leader))
					mem_src = s;
			}
			if (mem_src)
				mem = mem_of(*mem_src);
		} else {
			total = prev.total;
			for (size_t i = g.first_result; i < g.first_result + g.n_results; i++)
				total = sum(total, out.threads[i].delta);
			if (exited && (g.dead->flags & RS_F_RSS))
				mem = mem_of(*g.dead);
		}
		// a thread released between the leader's visit and its own is briefly in neither sum
		total = maxed(total, prev.total);

		// thread records carry their process's memory (one mm for all its threads)
		for (size_t i = g.first_result; i < g.first_result + g.n_results; i++)
			out.threads[i].mem = mem;

		if (!have_prev) {
			bool newborn = !baseline && pid_start > last_;
			if (!newborn) {
				if (live_view) {
					process_state &n = procs_[pid];
					n.start = pid_start;
					n.ts = now;
					n.total = total;
					n.mem = mem;
					n.comm = comm;
				}
				return;
			}
			prev.start = pid_start;
			prev.ts = pid_start;
		}
		// the interval's figures: its threads' (live, ended, companions), so that the I/O of
		// waited-for children, which the kernel adds to the parent's totals when it reaps them,
		// does not show up as the parent's own
		rs_counters delta{};
		uint64_t user = 0, system = 0;
		for (size_t i = g.first_result; i < g.first_result + g.n_results; i++) {
			delta = sum(delta, out.threads[i].delta);
			user += out.threads[i].user_ns;
			system += out.threads[i].system_ns;
		}

		// A thread that ended has its whole CPU time in its delta, its last slice included (taken
		// at its final switch); the kernel adds it to the process's total when it releases the
		// thread, which for a thread other than the leader comes before that last switch. So
		// the total is never less than the last one plus the interval's deltas: the interval
		// figures add up to the total.
		total = maxed(total, sum(prev.total, delta));

		if (!live_view && !exited) {
			// only exit records of some of its threads (no iteration this time): keep them
			// for the next figure, report nothing partial
			process_state &n = procs_[pid];
			n = prev;
			n.total = total;
			return;
		}

		process_result p;
		p.pid = pid;
		p.comm = comm;
		p.pid_start = pid_start;
		p.ts = exited ? g.dead->h.ts_boot_ns : now;
		uint64_t from = std::max(prev.ts, pid_start);
		p.interval_ns = p.ts > from ? p.ts - from : 0;
		p.delta = delta;
		p.total = total;
		p.user_ns = user;
		p.system_ns = system;
		p.mem = mem;
		p.threads = live_threads;
		p.exited = exited;
		out.processes.push_back(std::move(p));

		if (exited) {
			procs_.erase(pid);
		} else {
			process_state &n = procs_[pid];
			n.start = pid_start;
			n.ts = now;
			n.total = total;
			n.mem = mem;
			n.comm = comm;
		}
	}

	uint64_t page_size_;
	uint64_t last_ = 0; // boot time of the previous iteration
	bool started_ = false;
	std::unordered_map<uint32_t, thread_state> threads_;
	std::unordered_map<uint32_t, process_state> procs_;
	// scratch, kept between ticks to spare allocations
	std::unordered_set<uint32_t> exited_, touched_, seen_;
	std::vector<const rs_task *> by_pid_, dead_;
};

} // namespace procimage::resource
