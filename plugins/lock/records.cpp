// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: its records (see records.hpp).
#include "records.hpp"
#include "functions.hpp"
#include "procfs.hpp"

#include <procimage/bpf.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string_view>
#include <unistd.h>

namespace procimage::lock {

void reporter::start(const kernel_maps &maps, bool full, uint64_t activated_ns)
{
	maps_ = maps;
	full_ = full;
	activated_ns_ = prev_tick_ns_ = tick_ns_ = activated_ns;
	prev_locks_.clear();
	prev_threads_.clear();
	retired_locks_.clear();
	retired_threads_.clear();
	prev_futex_.clear();
	retired_futex_.clear();
	prev_sys_[0] = prev_sys_[1] = lk_sys_stats{};
	comms_.clear();
}

void reporter::tick(uint64_t now_boot_ns, bool final)
{
	if (maps_.locks < 0)
		return;
	uint64_t ts = now_boot_ns + host_.boot_to_epoch_ns;
	tick_ns_ = std::max(now_boot_ns, prev_tick_ns_);
	report_threads(ts, final);
	report_locks(ts, final);
	report_futexes(ts, final);
	report_system(ts);
	prev_tick_ns_ = tick_ns_;
}

const std::string &reporter::lock_symbol(uint32_t pid, uint64_t pid_start_ns, uint64_t addr)
{
	static const std::string none;
	if (!addr)
		return none;
	uint64_t now = sdk::boot_now_ns();
	auto key = std::make_tuple(pid, pid_start_ns, addr);
	auto it = lock_symbols_.find(key);
	// a name found stays; no name is asked again a second later (a library loaded since, the
	// maps read before an exec)
	if (it != lock_symbols_.end() && (!it->second.name.empty() || now < it->second.tried_ns + 1000000000ULL))
		return it->second.name;
	if (it == lock_symbols_.end()) {
		if (lock_symbols_.size() >= 100000) { // (a bound for a long whole-system run)
			lock_symbols_.clear();
			symbols_.trim(0);
		}
		it = lock_symbols_.emplace(key, lock_name{}).first;
	}
	// a lock inside a larger variable (a struct's member) is that variable plus its offset
	symbolize::symbol s = symbols_.resolve_data(pid, pid_start_ns, addr);
	it->second.name = s.name;
	it->second.tried_ns = now;
	if (!s.name.empty() && s.offset) {
		char off[24];
		std::snprintf(off, sizeof off, "+0x%" PRIx64, s.offset);
		it->second.name += off;
	}
	return it->second.name;
}

void reporter::new_image(uint32_t pid, uint64_t pid_start_ns)
{
	// Its files are read now, while it lives; addresses that found no name are asked again
	// at once. (The notice comes attach_after_ms after a fork or exec: names found meanwhile
	// are the new image's and stay.)
	symbols_.capture_data(pid, pid_start_ns);
	for (auto it = lock_symbols_.lower_bound(std::make_tuple(pid, uint64_t{0}, uint64_t{0}));
	     it != lock_symbols_.end() && std::get<0>(it->first) == pid;)
		it = it->second.name.empty() ? lock_symbols_.erase(it) : std::next(it);
}

void reporter::put_lock(sdk::record &r, uint32_t pid, uint64_t pid_start_ns, uint64_t addr)
{
	r.u64("lock_addr", addr, PI_FMT_HEX);
	if (const std::string &name = lock_symbol(pid, pid_start_ns, addr); !name.empty())
		r.str("lock_symbol", name);
}

void reporter::acquisition(const lk_acq &e)
{
	sdk::record r("lock", "acquisition");
	r.header(e.h, host_);
	put_lock(r, e.h.pid, e.h.pid_start_ns, e.lock_addr);
	r.str("lock_type", type_name(e.type))
		.str("op", op_name(e.op))
		.i64("ret", -static_cast<int64_t>(e.ret), PI_FMT_ERRNO)
		.boolean("acquired", e.ret == 0 || e.ret == 130 /* EOWNERDEAD: acquired */)
		.u64("wait_ns", e.wait_ns, PI_FMT_DURATION_NS)
		.u64("hold_ns", e.hold_ns, PI_FMT_DURATION_NS)
		.u64("futex_wait_ns", e.futex_wait_ns, PI_FMT_DURATION_NS)
		.boolean("contended", e.contended != 0)
		.u64("depth", e.depth)
		.u64("request_ts_ns", e.request_ns + host_.boot_to_epoch_ns)
		.u64("acquired_ts_ns", e.acquired_ns ? e.acquired_ns + host_.boot_to_epoch_ns : 0);
	r.emit(host_);
}

std::string reporter::thread_comm(uint32_t pid, uint32_t tid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm");
	std::string c;
	if (std::getline(in, c) && !c.empty())
		return c;
	if (maps_.threads < 0)
		return "";
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return "";
	size_t stride = (sizeof(lk_thread_stats) + 7) & ~size_t(7);
	std::vector<uint8_t> buf(stride * static_cast<size_t>(ncpu));
	if (bpf_map_lookup_elem(maps_.threads, &tid, buf.data()) != 0)
		return "";
	for (int cpu = 0; cpu < ncpu; cpu++) {
		lk_thread_stats t;
		std::memcpy(&t, buf.data() + stride * static_cast<size_t>(cpu), sizeof t);
		if (t.comm[0])
			return cstr(t.comm, sizeof t.comm);
	}
	return "";
}

void reporter::contention(const lk_contention &e)
{
	std::string holder_comm = cstr(e.holder_comm, sizeof e.holder_comm);
	if (holder_comm.empty() && e.holder_tid)
		holder_comm = thread_comm(e.h.pid, e.holder_tid);
	sdk::record r("lock", "contention");
	r.header(e.h, host_);
	r.u64("futex_addr", e.futex_addr, PI_FMT_HEX);
	put_lock(r, e.h.pid, e.h.pid_start_ns, e.lock_addr);
	r.str("lock_type", type_name(e.lock_type))
		.str("futex_op", futex_cmd_name(e.futex_op))
		.u64("wait_ns", e.wait_ns, PI_FMT_DURATION_NS)
		.i64("ret", e.ret, PI_FMT_ERRNO)
		.u64("holder_tid", e.holder_tid)
		.str("holder_comm", holder_comm)
		.u64("holder_held_ns", e.holder_held_ns, PI_FMT_DURATION_NS)
		.u64("holder_readers", e.holder_readers)
		.u64("waker_tid", e.waker_tid);
	r.emit(host_);
}

const std::string &reporter::comm_of(uint32_t pid)
{
	auto it = comms_.find(pid);
	if (it == comms_.end() || it->second.empty()) {
		std::string c = proc_comm(pid);
		auto t = prev_threads_.find(pid);
		if (c.empty() && t != prev_threads_.end())
			c = cstr(t->second.comm, sizeof t->second.comm);
		it = comms_.insert_or_assign(pid, c).first;
	}
	return it->second;
}

void reporter::report_locks(uint64_t ts, bool final)
{
	int fd = maps_.locks;
	percpu_reader<lk_lock_key, lk_lock_stats> rd(fd);
	auto now = rd.read_all(add_lock);
	std::vector<std::pair<lk_lock_key, lk_lock_stats>> interval, total;
	ended_cache ended;
	for (auto it = now.begin(); it != now.end();) {
		const auto &[k, v] = *it;
		lk_lock_stats d = v;
		auto p = prev_locks_.find(k);
		if (p != prev_locks_.end())
			sub_lock(d, p->second);
		bool active = d.acquisitions || d.failed || d.releases;
		if (active)
			interval.emplace_back(k, d);
		// A lock of an ended process, reported already: its figures leave the kernel's map
		// (room for the processes still to come) and stay here for the totals.
		if (!active && !final && ended.process(k.tgid)) {
			comm_of(k.tgid);
			retired_locks_[k] = v;
			bpf_map_delete_elem(fd, &k);
			it = now.erase(it);
			continue;
		}
		if (!retired_locks_.count(k))
			total.emplace_back(k, v);
		++it;
	}
	if (final)
		for (const auto &[k, v] : retired_locks_)
			total.emplace_back(k, v);
	prev_locks_ = std::move(now);
	// every process's figures per lock type, whatever `top` leaves out of the lock records
	emit_processes("interval", interval, ts);
	if (final) {
		emit_processes("total", total, ts);
	} else {
		// the running totals of the processes (and lock types) active in the interval
		std::set<std::pair<uint32_t, uint32_t>> active;
		for (const auto &[k, _] : interval)
			active.emplace(k.tgid, k.type);
		std::vector<std::pair<lk_lock_key, lk_lock_stats>> theirs;
		for (const auto &e : total)
			if (active.count({e.first.tgid, e.first.type}))
				theirs.push_back(e);
		emit_processes("total", theirs, ts);
	}
	auto wait = [](const lk_lock_stats &s) { return s.wait_total_ns; };
	auto shown = ranked(std::move(interval), wait);
	emit_locks("interval", shown, ts);
	emit_locks("total", final ? ranked(std::move(total), wait) : totals_of(shown, total), ts);
}

void reporter::emit_processes(const char *window, const std::vector<std::pair<lk_lock_key, lk_lock_stats>> &v,
		    uint64_t ts)
{
	struct sum {
		lk_lock_stats s{};
		uint64_t locks = 0;
	};
	std::map<std::pair<uint32_t, uint32_t>, sum> by; // (tgid, type)
	for (const auto &[k, s] : v) {
		auto &b = by[{k.tgid, k.type}];
		add_lock(b.s, s);
		b.locks++;
	}
	for (const auto &[key, b] : by) {
		const lk_lock_stats &s = b.s;
		sdk::record r("lock", "process");
		r.ts(ts).ids(key.first, 0).comm(comm_of(key.first)).pid_start(s.pid_start_ns);
		periodic(r, "process", window);
		r.str("lock_type", type_name(key.second))
			.u64("locks", b.locks);
		lock_fields(r, s);
		r.emit(host_);
	}
}

void reporter::lock_fields(sdk::record &r, const lk_lock_stats &s)
{
	r.u64("acquisitions", s.acquisitions)
		.u64("contended", s.contended)
		.u64("failed", s.failed)
		.u64("releases", s.releases)
		.u64("wait_total_ns", s.wait_total_ns, PI_FMT_DURATION_NS)
		.u64("wait_max_ns", s.wait_max_ns, PI_FMT_DURATION_NS)
		.u64("hold_total_ns", s.hold_total_ns, PI_FMT_DURATION_NS)
		.u64("hold_max_ns", s.hold_max_ns, PI_FMT_DURATION_NS)
		.u64v("wait_hist_ns", hist(s.wait_hist), PI_FMT_LOG2_HIST)
		.u64v("hold_hist_ns", hist(s.hold_hist), PI_FMT_LOG2_HIST);
}

void reporter::periodic(sdk::record &r, const char *scope, const char *window) const
{
	bool total = std::string_view(window) == "total";
	r.str("scope", scope)
		.str("window", window)
		.u64("interval_ns", total ? tick_ns_ - activated_ns_ : tick_ns_ - prev_tick_ns_, PI_FMT_DURATION_NS);
}

void reporter::emit_locks(const char *window, const std::vector<std::pair<lk_lock_key, lk_lock_stats>> &v, uint64_t ts)
{
	uint64_t rank = 0;
	for (const auto &[k, s] : v) {
		sdk::record r("lock", "lock");
		r.ts(ts).ids(k.tgid, 0).comm(comm_of(k.tgid)).pid_start(s.pid_start_ns);
		periodic(r, "process", window);
		r.u64("rank", ++rank);
		put_lock(r, k.tgid, s.pid_start_ns, k.addr);
		r.str("lock_type", type_name(k.type));
		lock_fields(r, s);
		r.emit(host_);
	}
}

void reporter::report_threads(uint64_t ts, bool final)
{
	int fd = maps_.threads;
	percpu_reader<uint32_t, lk_thread_stats> rd(fd);
	auto now = rd.read_all(add_thread);
	std::vector<std::pair<uint32_t, lk_thread_stats>> interval, total;
	ended_cache ended;
	for (auto it = now.begin(); it != now.end();) {
		const auto &[k, v] = *it;
		lk_thread_stats d = v;
		auto p = prev_threads_.find(k);
		if (p != prev_threads_.end())
			sub_thread(d, p->second);
		bool active = d.acquisitions || d.failed || d.releases;
		if (active)
			interval.emplace_back(k, d);
		// an ended thread's figures, reported already, leave the kernel's map (see locks)
		if (!active && !final && ended.thread(v.tgid, k)) {
			if (k == v.tgid && !comms_.count(k))
				comms_[k] = cstr(v.comm, sizeof v.comm);
			retired_threads_[k] = v;
			bpf_map_delete_elem(fd, &k);
			it = now.erase(it);
			continue;
		}
		if (!retired_threads_.count(k))
			total.emplace_back(k, v);
		++it;
	}
	if (final)
		for (const auto &[k, v] : retired_threads_)
			total.emplace_back(k, v);
	prev_threads_ = std::move(now);
	auto wait = [](const lk_thread_stats &s) { return s.wait_total_ns; };
	auto shown = ranked(std::move(interval), wait);
	emit_threads("interval", shown, ts);
	emit_threads("total", final ? ranked(std::move(total), wait) : totals_of(shown, total), ts);
}

void reporter::emit_threads(const char *window, const std::vector<std::pair<uint32_t, lk_thread_stats>> &v, uint64_t ts)
{
	uint64_t rank = 0;
	for (const auto &[tid, s] : v) {
		sdk::record r("lock", "thread");
		r.ts(ts).ids(s.tgid, tid).comm(cstr(s.comm, sizeof s.comm)).pid_start(s.pid_start_ns);
		periodic(r, "thread", window);
		r.u64("rank", ++rank)
			.u64("acquisitions", s.acquisitions)
			.u64("contended", s.contended)
			.u64("failed", s.failed)
			.u64("releases", s.releases)
			.u64("wait_total_ns", s.wait_total_ns, PI_FMT_DURATION_NS)
			.u64("wait_max_ns", s.wait_max_ns, PI_FMT_DURATION_NS)
			.u64("hold_total_ns", s.hold_total_ns, PI_FMT_DURATION_NS)
			.u64("hold_max_ns", s.hold_max_ns, PI_FMT_DURATION_NS)
			.u64v("wait_hist_ns", hist(s.wait_hist), PI_FMT_LOG2_HIST)
			.u64v("hold_hist_ns", hist(s.hold_hist), PI_FMT_LOG2_HIST);
		r.emit(host_);
	}
}

void reporter::report_futexes(uint64_t ts, bool final)
{
	int fd = maps_.futex;
	percpu_reader<lk_futex_key, lk_futex_stats> rd(fd);
	auto now = rd.read_all(add_futex);
	// A whole-system target meets many futex words: when the map is half full, words idle
	// in this interval leave it and their figures are kept here for the totals.
	bool prune = now.size() > cfg_.max_futexes / 2;
	// per word: (tgid, addr)
	std::map<std::pair<uint32_t, uint64_t>, futex_word> interval, total;
	auto add = [](futex_word &w, const lk_futex_key &k, const lk_futex_stats &s) {
		add_futex(w.s, s);
		if (s.waits && std::find(w.waiters.begin(), w.waiters.end(), k.tid) == w.waiters.end())
			w.waiters.push_back(k.tid);
		if (s.wakes && std::find(w.wakers.begin(), w.wakers.end(), k.tid) == w.wakers.end())
			w.wakers.push_back(k.tid);
	};
	std::vector<lk_futex_key> idle;
	for (const auto &[k, v] : now) {
		lk_futex_stats d = v;
		auto p = prev_futex_.find(k);
		if (p != prev_futex_.end())
			sub_futex(d, p->second);
		if (d.waits || d.wakes)
			add(interval[{k.tgid, k.addr}], k, d);
		else if (prune)
			idle.push_back(k);
	}
	for (const auto &k : idle) {
		add_futex(retired_futex_[k], now[k]);
		bpf_map_delete_elem(fd, &k);
		now.erase(k);
	}
	for (const auto &[k, v] : retired_futex_) {
		lk_futex_stats sum = v;
		auto n = now.find(k);
		if (n != now.end())
			add_futex(sum, n->second);
		add(total[{k.tgid, k.addr}], k, sum);
	}
	for (const auto &[k, v] : now)
		if (!retired_futex_.count(k))
			add(total[{k.tgid, k.addr}], k, v);
	prev_futex_ = std::move(now);
	auto flat = [](std::map<std::pair<uint32_t, uint64_t>, futex_word> &m) {
		std::vector<std::pair<std::pair<uint32_t, uint64_t>, futex_word>> v(m.begin(), m.end());
		return v;
	};
	auto wait = [](const futex_word &w) { return w.s.wait_total_ns; };
	auto shown = ranked(flat(interval), wait);
	emit_futexes("interval", shown, ts);
	auto all = flat(total);
	emit_futexes("total", final ? ranked(std::move(all), wait) : totals_of(shown, all), ts);
}

void reporter::emit_futexes(const char *window,
		  const std::vector<std::pair<std::pair<uint32_t, uint64_t>, futex_word>> &v, uint64_t ts)
{
	uint64_t rank = 0;
	for (const auto &[k, w] : v) {
		sdk::record r("lock", "futex");
		r.ts(ts).ids(k.first, 0).comm(comm_of(k.first)).pid_start(w.s.pid_start_ns);
		periodic(r, "process", window);
		r.u64("rank", ++rank)
			.u64("futex_addr", k.second, PI_FMT_HEX)
			.u64("waits", w.s.waits)
			.u64("wait_total_ns", w.s.wait_total_ns, PI_FMT_DURATION_NS)
			.u64("wait_max_ns", w.s.wait_max_ns, PI_FMT_DURATION_NS)
			.u64("timeouts", w.s.timeouts)
			.u64("wakes", w.s.wakes)
			.u64("woken", w.s.woken)
			.u64v("waiter_tids", w.waiters)
			.u64v("waker_tids", w.wakers);
		r.emit(host_);
	}
}

void reporter::report_system(uint64_t ts)
{
	int fd = maps_.system;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return;
	std::vector<lk_sys_stats> vals(static_cast<size_t>(ncpu));
	for (uint32_t k = 0; k < 2; k++) {
		if (k == 1 && !cfg_.system)
			continue;
		if (bpf_map_lookup_elem(fd, &k, vals.data()) != 0)
			continue;
		lk_sys_stats s{};
		for (const auto &v : vals)
			add_sys(s, v);
		lk_sys_stats d = s;
		sub_sys(d, prev_sys_[k]);
		prev_sys_[k] = s;
		emit_system(k == 0 ? "target" : "system", "interval", d, ts);
		emit_system(k == 0 ? "target" : "system", "total", s, ts);
	}
}

void reporter::emit_system(const char *scope, const char *window, const lk_sys_stats &s, uint64_t ts)
{
	sdk::record r("lock", "futex_summary");
	r.ts(ts).ids(0, 0).comm("");
	periodic(r, scope, window);
	r.str("mode", full_ ? "full" : "contention")
		.u64("waits", s.waits)
		.u64("wait_total_ns", s.wait_total_ns, PI_FMT_DURATION_NS)
		.u64("wait_max_ns", s.wait_max_ns, PI_FMT_DURATION_NS)
		.u64("wakes", s.wakes)
		.u64("woken", s.woken)
		.u64v("wait_hist_ns", hist(s.wait_hist), PI_FMT_LOG2_HIST);
	r.emit(host_);
}

} // namespace procimage::lock
