// SPDX-License-Identifier: Apache-2.0
//
// syscall probe, user side: the arithmetic of its reports, kept apart from libbpf so that unit
// tests can check it on canned kernel values. Per-CPU copies of struct sc_stats are merged,
// interval figures are the difference of two cumulative snapshots, and the interval extremes
// come from the slot the kernel kept for that interval.
#pragma once

#include "syscall_records.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace procimage::syscalls {

using hist_t = std::array<uint64_t, SC_HIST_SLOTS>;

// Cumulative figures of one syscall, merged over CPUs.
struct figures {
	uint64_t count = 0;
	uint64_t errors = 0;
	uint64_t total_ns = 0;
	uint64_t max_ns = 0;
	uint64_t min_ns = 0; // valid when count > 0
	// extremes of the interval asked for in merge(); have_interval false if no CPU saw a call
	// in it
	bool have_interval = false;
	uint64_t imax_ns = 0;
	uint64_t imin_ns = 0;
	hist_t hist{};

	figures &operator+=(const figures &o)
	{
		if (o.count && (!count || o.min_ns < min_ns))
			min_ns = o.min_ns;
		max_ns = std::max(max_ns, o.max_ns);
		count += o.count;
		errors += o.errors;
		total_ns += o.total_ns;
		if (o.have_interval) {
			imin_ns = have_interval ? std::min(imin_ns, o.imin_ns) : o.imin_ns;
			imax_ns = have_interval ? std::max(imax_ns, o.imax_ns) : o.imax_ns;
			have_interval = true;
		}
		for (size_t i = 0; i < hist.size(); i++)
			hist[i] += o.hist[i];
		return *this;
	}
};

// Merge the per-CPU copies of one value; epoch = the interval whose extremes are wanted.
inline figures merge(const sc_stats *cpus, size_t ncpu, uint64_t epoch)
{
	figures f;
	for (size_t c = 0; c < ncpu; c++) {
		const sc_stats &s = cpus[c];
		figures one;
		one.count = s.count;
		one.errors = s.errors;
		one.total_ns = s.total_ns;
		one.max_ns = s.max_ns;
		one.min_ns = s.min_ns;
		unsigned slot = epoch & 1;
		if (s.iepoch[slot] == epoch && epoch != 0) {
			one.have_interval = true;
			one.imax_ns = s.imax_ns[slot];
			one.imin_ns = s.imin_ns[slot];
		}
		std::copy(std::begin(s.hist), std::end(s.hist), one.hist.begin());
		f += one;
	}
	return f;
}

// What happened between two snapshots of the same counters.
struct interval {
	uint64_t count = 0;
	uint64_t errors = 0;
	uint64_t total_ns = 0;
	uint64_t max_ns = 0;
	uint64_t min_ns = 0;
	hist_t hist{};

	uint64_t avg_ns() const { return count ? total_ns / count : 0; }

	interval &operator+=(const interval &o)
	{
		if (o.count && (!count || o.min_ns < min_ns))
			min_ns = o.min_ns;
		if (o.count)
			max_ns = std::max(max_ns, o.max_ns);
		count += o.count;
		errors += o.errors;
		total_ns += o.total_ns;
		for (size_t i = 0; i < hist.size(); i++)
			hist[i] += o.hist[i];
		return *this;
	}
};

inline interval since(const figures &now, const figures &before)
{
	interval d;
	if (now.count < before.count)
		return d; // counters were reset: nothing to compare
	d.count = now.count - before.count;
	d.errors = now.errors - before.errors;
	d.total_ns = now.total_ns - before.total_ns;
	for (size_t i = 0; i < d.hist.size(); i++)
		d.hist[i] = now.hist[i] - std::min(now.hist[i], before.hist[i]);
	if (!d.count)
		return d;
	if (now.have_interval) {
		d.max_ns = now.imax_ns;
		d.min_ns = now.imin_ns;
	} else {
		// Calls counted after the user side read the extremes of their interval (a call that
		// straddled the tick): bound them by their histogram buckets.
		size_t lo = 0, hi = 0;
		bool any = false;
		for (size_t i = 0; i < d.hist.size(); i++)
			if (d.hist[i]) {
				if (!any)
					lo = i;
				hi = i;
				any = true;
			}
		d.min_ns = lo ? (1ULL << lo) : 0;
		d.max_ns = (2ULL << hi) - 1;
	}
	// the cumulative extremes bound the interval's
	d.max_ns = std::min(d.max_ns, now.max_ns);
	d.min_ns = std::max(d.min_ns, now.min_ns);
	return d;
}

// The n syscalls with the most calls, most first; ties by number.
inline std::vector<std::pair<uint32_t, uint64_t>> top(const std::map<uint32_t, uint64_t> &counts, size_t n)
{
	std::vector<std::pair<uint32_t, uint64_t>> v;
	for (const auto &[nr, c] : counts)
		if (c)
			v.emplace_back(nr, c);
	std::sort(v.begin(), v.end(), [](const auto &a, const auto &b) {
		return a.second != b.second ? a.second > b.second : a.first < b.first;
	});
	if (v.size() > n)
		v.resize(n);
	return v;
}

// Kernel return value split for machine sinks: value of a successful call, errno of a failed
// one (the kernel's -4095..-1 convention).
inline bool is_error(int64_t ret) { return ret < 0 && ret >= -4095; }

} // namespace procimage::syscalls
