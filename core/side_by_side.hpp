// SPDX-License-Identifier: Apache-2.0
//
// Jobs run at the same time: the probes' loads at start, their detaches at the end.
#ifndef PROCIMAGE_CORE_SIDE_BY_SIDE_HPP
#define PROCIMAGE_CORE_SIDE_BY_SIDE_HPP

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <system_error>
#include <thread>
#include <vector>

namespace procimage::core {

// Runs job(0) .. job(n - 1) on at most `threads` threads, the calling one included, each taking
// the next job not yet taken; returns once every job has returned. When no more threads can be
// started, the ones there (at least the caller) run the rest. job must not throw.
template <typename Job> void side_by_side(size_t n, size_t threads, Job &&job)
{
	std::atomic<size_t> next{0};
	auto worker = [&] {
		for (size_t k; (k = next.fetch_add(1)) < n;)
			job(k);
	};
	std::vector<std::thread> helpers;
	for (size_t t = 1; t < std::min(n, threads); t++) {
		try {
			helpers.emplace_back(worker);
		} catch (const std::system_error &) {
			break;
		}
	}
	worker();
	for (auto &t : helpers)
		t.join();
}

} // namespace procimage::core

#endif // PROCIMAGE_CORE_SIDE_BY_SIDE_HPP
