// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: its records. The streamed ones (acquisition, contention) decoded from
// the ring buffer, and at every tick the periodic ones (thread, process, lock, futex,
// futex_summary) made from the kernel's aggregates: per interval, and in total at the end,
// with the fields every periodic record starts with (scope, window, interval_ns). Figures of
// ended processes and threads leave the kernel's maps once reported and are kept here for the
// totals.
#pragma once

#include "aggregates.hpp"
#include "config.hpp"
#include "lock.h"
#include "procfs.hpp"

#include <procimage/sdk.hpp>
#include <symbolize.hpp>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <tuple>
#include <utility>
#include <vector>

#include <unistd.h>

namespace procimage::lock {

namespace sdk = procimage::sdk;

// The kernel maps the periodic records are read from (descriptors).
struct kernel_maps {
	int locks = -1, threads = -1, futex = -1, system = -1;
};

class reporter {
public:
	reporter(const pi_host &host, const config &cfg) : host_(host), cfg_(cfg) {}

	// A new activation, from boot ns activated_ns: nothing of an earlier one is kept. full: hold
	// tracking (uprobes), else contention-only.
	void start(const kernel_maps &maps, bool full, uint64_t activated_ns);
	// Streamed records.
	void acquisition(const lk_acq &e);
	void contention(const lk_contention &e);
	// A new process of the target, or one that exec'd: the files it maps are read for the
	// names of its lock addresses.
	void new_image(uint32_t pid, uint64_t pid_start_ns);
	// The periodic records of the interval that ends now (boot ns), and with final the totals.
	void tick(uint64_t now_boot_ns, bool final);

private:
	static std::string cstr(const char *s, size_t max) { return std::string(s, strnlen(s, max)); }

	// A thread's name: its own while it runs, else the one kept with its lock figures.
	std::string thread_comm(uint32_t pid, uint32_t tid);

	// The variable a lock is, when the ELF symbol tables of the process name its address (a
	// global or static pthread_mutex_t: "g_lock"); "" for a lock on the heap or the stack.
	// Asked once per process and address.
	const std::string &lock_symbol(uint32_t pid, uint64_t pid_start_ns, uint64_t addr);
	// A record's lock address, and its name when it has one.
	void put_lock(sdk::record &r, uint32_t pid, uint64_t pid_start_ns, uint64_t addr);



	// Whether processes and threads have ended, each asked of /proc once per report.
	class ended_cache {
	public:
		bool process(uint32_t tgid)
		{
			auto [it, fresh] = procs_.try_emplace(tgid, false);
			if (fresh)
				it->second = process_ended(tgid);
			return it->second;
		}
		bool thread(uint32_t tgid, uint32_t tid)
		{
			if (process(tgid))
				return true;
			std::string path = "/proc/" + std::to_string(tgid) + "/task/" + std::to_string(tid);
			return access(path.c_str(), F_OK) != 0;
		}

	private:
		std::unordered_map<uint32_t, bool> procs_;
	};

	// A process's name: from /proc while it runs, else from its main thread's figures.
	const std::string &comm_of(uint32_t pid);

	// Rank entries by wait time (descending) and keep the top cfg_.top (0: all).
	template <typename K, typename V, typename W> std::vector<std::pair<K, V>> ranked(std::vector<std::pair<K, V>> v, W &&wait)
	{
		std::stable_sort(v.begin(), v.end(), [&](const auto &a, const auto &b) { return wait(a.second) > wait(b.second); });
		if (cfg_.top && v.size() > cfg_.top)
			v.resize(cfg_.top);
		return v;
	}

	// The running totals of the entities an interval's rows showed, in the same order (the
	// `total` rows of every tick; the last tick has them for every entity).
	template <typename K, typename V, typename T>
	static std::vector<std::pair<K, T>> totals_of(const std::vector<std::pair<K, V>> &shown,
						      const std::vector<std::pair<K, T>> &total)
	{
		std::map<K, const T *> by;
		for (const auto &[k, t] : total)
			by.emplace(k, &t);
		std::vector<std::pair<K, T>> out;
		for (const auto &[k, _] : shown)
			if (auto it = by.find(k); it != by.end())
				out.emplace_back(k, *it->second);
		return out;
	}

	void report_locks(uint64_t ts, bool final);

	// One record per (process, lock type) with activity: the sum over all its locks.
	void emit_processes(const char *window, const std::vector<std::pair<lk_lock_key, lk_lock_stats>> &v,
			    uint64_t ts);

	// The figures of one lock, or of several summed.
	static void lock_fields(sdk::record &r, const lk_lock_stats &s);

	// The fields every periodic record starts with: what it is about, and the window it covers
	// (interval: since the previous tick; total: since the activation).
	void periodic(sdk::record &r, const char *scope, const char *window) const;

	void emit_locks(const char *window, const std::vector<std::pair<lk_lock_key, lk_lock_stats>> &v, uint64_t ts);

	void report_threads(uint64_t ts, bool final);

	void emit_threads(const char *window, const std::vector<std::pair<uint32_t, lk_thread_stats>> &v, uint64_t ts);

	struct futex_word {
		lk_futex_stats s{};
		std::vector<uint64_t> waiters, wakers;
	};

	void report_futexes(uint64_t ts, bool final);

	void emit_futexes(const char *window,
			  const std::vector<std::pair<std::pair<uint32_t, uint64_t>, futex_word>> &v, uint64_t ts);

	void report_system(uint64_t ts); // both windows at every tick

	void emit_system(const char *scope, const char *window, const lk_sys_stats &s, uint64_t ts);

	const pi_host &host_;
	const config &cfg_;
	kernel_maps maps_;
	bool full_ = false;
	std::map<lk_lock_key, lk_lock_stats> prev_locks_;
	std::map<uint32_t, lk_thread_stats> prev_threads_;
	std::map<lk_lock_key, lk_lock_stats> retired_locks_;   // of ended processes, out of the map
	std::map<uint32_t, lk_thread_stats> retired_threads_; // ended threads, out of the map
	std::map<lk_futex_key, lk_futex_stats> prev_futex_;
	std::map<lk_futex_key, lk_futex_stats> retired_futex_; // figures of words pruned from the map
	lk_sys_stats prev_sys_[2]{};
	// boot ns: the activation, the previous tick and the one being reported (interval_ns)
	uint64_t activated_ns_ = 0, prev_tick_ns_ = 0, tick_ns_ = 0;
	std::unordered_map<uint32_t, std::string> comms_;
	symbolize::symbolizer symbols_;
	struct lock_name {
		std::string name;
		uint64_t tried_ns = 0; // boot ns of the lookup that found no name
	};
	std::map<std::tuple<uint32_t, uint64_t, uint64_t>, lock_name> lock_symbols_; // (pid, start, addr)
};

} // namespace procimage::lock
