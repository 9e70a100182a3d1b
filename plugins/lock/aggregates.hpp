// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: reading the kernel's per-CPU aggregates (per lock, thread, futex word
// and the whole system), combining their CPUs' values, and the differences between two reads
// that make an interval.
#pragma once

#include "lock.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

namespace procimage::lock {

template <typename K, typename V> class percpu_reader {
public:
	explicit percpu_reader(int fd) : fd_(fd), ncpu_(libbpf_num_possible_cpus()) {}

	// Every entry, with its per-CPU values combined by sum(acc, one).
	template <typename F> std::map<K, V> read_all(F &&sum) const
	{
		std::map<K, V> out;
		if (ncpu_ <= 0)
			return out;
		size_t stride = (sizeof(V) + 7) & ~size_t(7);
		std::vector<uint8_t> buf(stride * static_cast<size_t>(ncpu_));
		K key{}, next{};
		const void *prev = nullptr;
		while (bpf_map_get_next_key(fd_, prev, &next) == 0) {
			if (bpf_map_lookup_elem(fd_, &next, buf.data()) == 0) {
				V acc{};
				for (int c = 0; c < ncpu_; c++) {
					V one;
					std::memcpy(&one, buf.data() + stride * static_cast<size_t>(c), sizeof(V));
					sum(acc, one);
				}
				out[next] = acc;
			}
			key = next;
			prev = &key;
		}
		return out;
	}

private:
	int fd_;
	int ncpu_;
};

template <typename K> void clear_map(int fd)
{
	std::vector<K> keys;
	K key{}, next{};
	const void *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		keys.push_back(next);
		key = next;
		prev = &key;
	}
	for (const auto &k : keys)
		bpf_map_delete_elem(fd, &k);
}

struct lock_key_less {
	bool operator()(const lk_lock_key &a, const lk_lock_key &b) const
	{
		return std::tie(a.tgid, a.addr, a.type) < std::tie(b.tgid, b.addr, b.type);
	}
};

} // namespace procimage::lock

// std::map keys
inline bool operator<(const lk_lock_key &a, const lk_lock_key &b) { return procimage::lock::lock_key_less{}(a, b); }
inline bool operator<(const lk_futex_key &a, const lk_futex_key &b)
{
	return std::tie(a.tgid, a.addr, a.tid) < std::tie(b.tgid, b.addr, b.tid);
}

namespace procimage::lock {

inline void add_lock(lk_lock_stats &a, const lk_lock_stats &b)
{
	a.acquisitions += b.acquisitions;
	a.contended += b.contended;
	a.failed += b.failed;
	a.wait_total_ns += b.wait_total_ns;
	a.wait_max_ns = std::max(a.wait_max_ns, b.wait_max_ns);
	a.hold_total_ns += b.hold_total_ns;
	a.hold_max_ns = std::max(a.hold_max_ns, b.hold_max_ns);
	a.releases += b.releases;
	a.pid_start_ns = std::max(a.pid_start_ns, b.pid_start_ns);
	for (int i = 0; i < LK_HIST_SLOTS; i++) {
		a.wait_hist[i] += b.wait_hist[i];
		a.hold_hist[i] += b.hold_hist[i];
	}
}

inline void add_thread(lk_thread_stats &a, const lk_thread_stats &b)
{
	a.acquisitions += b.acquisitions;
	a.contended += b.contended;
	a.failed += b.failed;
	a.wait_total_ns += b.wait_total_ns;
	a.wait_max_ns = std::max(a.wait_max_ns, b.wait_max_ns);
	a.hold_total_ns += b.hold_total_ns;
	a.hold_max_ns = std::max(a.hold_max_ns, b.hold_max_ns);
	a.releases += b.releases;
	for (int i = 0; i < LK_HIST_SLOTS; i++) {
		a.wait_hist[i] += b.wait_hist[i];
		a.hold_hist[i] += b.hold_hist[i];
	}
	if (b.tgid)
		a.tgid = b.tgid;
	a.pid_start_ns = std::max(a.pid_start_ns, b.pid_start_ns);
	if (b.comm[0] && !a.comm[0])
		std::memcpy(a.comm, b.comm, sizeof a.comm);
}

inline void add_futex(lk_futex_stats &a, const lk_futex_stats &b)
{
	a.waits += b.waits;
	a.wait_total_ns += b.wait_total_ns;
	a.wait_max_ns = std::max(a.wait_max_ns, b.wait_max_ns);
	a.timeouts += b.timeouts;
	a.wakes += b.wakes;
	a.woken += b.woken;
	a.pid_start_ns = std::max(a.pid_start_ns, b.pid_start_ns);
}

inline void add_sys(lk_sys_stats &a, const lk_sys_stats &b)
{
	a.waits += b.waits;
	a.wait_total_ns += b.wait_total_ns;
	a.wait_max_ns = std::max(a.wait_max_ns, b.wait_max_ns);
	a.wakes += b.wakes;
	a.woken += b.woken;
	for (int i = 0; i < LK_HIST_SLOTS; i++)
		a.wait_hist[i] += b.wait_hist[i];
}

// a - b for the counters; the maxima stay those of a (the kernel keeps one maximum per entry)
inline void sub_lock(lk_lock_stats &a, const lk_lock_stats &b)
{
	a.acquisitions -= b.acquisitions;
	a.contended -= b.contended;
	a.failed -= b.failed;
	a.wait_total_ns -= b.wait_total_ns;
	a.hold_total_ns -= b.hold_total_ns;
	a.releases -= b.releases;
	for (int i = 0; i < LK_HIST_SLOTS; i++) {
		a.wait_hist[i] -= b.wait_hist[i];
		a.hold_hist[i] -= b.hold_hist[i];
	}
}

inline void sub_thread(lk_thread_stats &a, const lk_thread_stats &b)
{
	a.acquisitions -= b.acquisitions;
	a.contended -= b.contended;
	a.failed -= b.failed;
	a.wait_total_ns -= b.wait_total_ns;
	a.hold_total_ns -= b.hold_total_ns;
	a.releases -= b.releases;
	for (int i = 0; i < LK_HIST_SLOTS; i++) {
		a.wait_hist[i] -= b.wait_hist[i];
		a.hold_hist[i] -= b.hold_hist[i];
	}
}

inline void sub_futex(lk_futex_stats &a, const lk_futex_stats &b)
{
	a.waits -= b.waits;
	a.wait_total_ns -= b.wait_total_ns;
	a.timeouts -= b.timeouts;
	a.wakes -= b.wakes;
	a.woken -= b.woken;
}

inline void sub_sys(lk_sys_stats &a, const lk_sys_stats &b)
{
	a.waits -= b.waits;
	a.wait_total_ns -= b.wait_total_ns;
	a.wakes -= b.wakes;
	a.woken -= b.woken;
	for (int i = 0; i < LK_HIST_SLOTS; i++)
		a.wait_hist[i] -= b.wait_hist[i];
}

inline std::vector<uint64_t> hist(const __u64 *h)
{
	int last = LK_HIST_SLOTS - 1;
	while (last >= 0 && h[last] == 0)
		last--;
	return std::vector<uint64_t>(h, h + last + 1);
}

} // namespace procimage::lock
