// SPDX-License-Identifier: Apache-2.0
#include "losses.hpp"

#include <procimage/bpf/common.h>

#include <algorithm>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

namespace procimage::core {

static_assert(LOST_KEYS == PI_LOST_SLOTS);

loss_ledger::loss_ledger(const std::string &probe_id, const char *const *names, size_t n_names, uint64_t repeat_ns)
	: repeat_ns_(repeat_ns)
{
	causes_[PI_LOST_ANY] = {"other", "a map or ring buffer was full"};
	causes_[PI_LOST_RINGBUF] = {"ringbuf", "the ring buffer was full: the host did not read it in time (raise " +
						       probe_id + ".ringbuf_kb)"};
	for (uint32_t k = PI_LOST_PROBE; k < LOST_KEYS; k++) {
		const char *n = k < n_names ? names[k] : nullptr;
		if (!n || !*n) {
			causes_[k] = {"other", causes_[PI_LOST_ANY].text};
			continue;
		}
		// "MAP: what happened" names its map first; anything else is all text
		std::string s = n;
		auto colon = s.find(": ");
		if (colon != std::string::npos && colon > 0 && s.find(' ') > colon)
			causes_[k] = {s.substr(0, colon), s.substr(colon + 2)};
		else
			causes_[k] = {"key" + std::to_string(k), s};
	}
}

std::vector<loss_delta> loss_ledger::update(const std::array<uint64_t, LOST_KEYS> &counts, uint64_t now_ns)
{
	// key 0 counts every loss: what the other keys do not account for is "other"
	std::array<uint64_t, LOST_KEYS> now = counts;
	uint64_t named = 0;
	for (uint32_t k = 1; k < LOST_KEYS; k++)
		named += counts[k];
	now[PI_LOST_ANY] = counts[PI_LOST_ANY] > named ? counts[PI_LOST_ANY] - named : 0;

	std::vector<loss_delta> out;
	for (uint32_t k = 0; k < LOST_KEYS; k++) {
		if (now[k] <= seen_[k])
			continue; // (counters only grow; a smaller reading is a reader's race, ignored)
		loss_delta d;
		d.key = k;
		d.cause = &causes_[k];
		d.lost = now[k] - seen_[k];
		d.cause_total = now[k];
		seen_[k] = now[k];
		total_ += d.lost;
		unwarned_[k] += d.lost;
		if (!ever_warned_[k] || now_ns >= warned_ns_[k] + repeat_ns_) {
			d.warn = true;
			d.unwarned = unwarned_[k];
			unwarned_[k] = 0;
			warned_ns_[k] = now_ns;
			ever_warned_[k] = true;
		}
		out.push_back(d);
	}
	return out;
}

std::vector<std::pair<std::string, uint64_t>> loss_ledger::by_cause() const
{
	std::vector<std::pair<std::string, uint64_t>> out;
	for (uint32_t k = 0; k < LOST_KEYS; k++) {
		if (!seen_[k])
			continue;
		auto same = std::find_if(out.begin(), out.end(), [&](const auto &p) { return p.first == causes_[k].id; });
		if (same != out.end())
			same->second += seen_[k];
		else
			out.emplace_back(causes_[k].id, seen_[k]);
	}
	return out;
}

bool read_lost_counts(int fd, std::array<uint64_t, LOST_KEYS> &out)
{
	out.fill(0);
	if (fd < 0)
		return true;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return false;
	std::vector<uint64_t> vals(static_cast<size_t>(ncpu));
	for (uint32_t k = 0; k < LOST_KEYS; k++) {
		if (bpf_map_lookup_elem(fd, &k, vals.data()) != 0) {
			if (k == 0)
				return false;
			break; // a map from before the causes: key 0 only
		}
		for (uint64_t v : vals)
			out[k] += v;
	}
	return true;
}

} // namespace procimage::core
