// SPDX-License-Identifier: Apache-2.0
//
// What one probe lost, by cause. A probe's pi_lost counters (a per-CPU array) hold in key 0
// every record or map entry it could not store, in key PI_LOST_RINGBUF those a full ring buffer
// refused, and in the keys after it the probe's own causes, which the probe names in
// pi_probe_io.lost_causes ("MAP: what was lost (the setting to raise)"). The ledger turns
// successive readings into exact per-cause counts for the records, and into warnings that say
// each cause once, then at most once per `repeat_ns` with what was lost since.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace procimage::core {

constexpr uint32_t LOST_KEYS = 8; // PI_LOST_SLOTS

// The cause of losses counted in one key.
struct loss_cause {
	std::string id;   // short name for records and metrics: the map's, "ringbuf", "other"
	std::string text; // for people: what was lost and how to avoid it
};

// New losses of one cause since the previous reading.
struct loss_delta {
	uint32_t key = 0;
	const loss_cause *cause = nullptr;
	uint64_t lost = 0;        // since the previous reading
	uint64_t cause_total = 0; // of this cause, in all
	bool warn = false;        // say it now (first time, or repeat_ns since the last warning)
	uint64_t unwarned = 0;    // lost since the last warning of this cause, this reading included
};

class loss_ledger {
public:
	// `probe_id`: the probe's name in the pipeline (for the ring buffer's setting);
	// `names`: pi_probe_io.lost_causes (NULL entries: key not used by the probe).
	loss_ledger(const std::string &probe_id, const char *const *names, size_t n_names,
		    uint64_t repeat_ns = 10'000'000'000ULL);

	// A reading of the counters (key -> sum over CPUs; keys the map lacks are 0). Returns the
	// causes with new losses, in key order; what no key names is reported under "other".
	std::vector<loss_delta> update(const std::array<uint64_t, LOST_KEYS> &counts, uint64_t now_ns);

	uint64_t total() const { return total_; }
	// Each cause with losses: its id and count (for the summary).
	std::vector<std::pair<std::string, uint64_t>> by_cause() const;
	const loss_cause &cause(uint32_t key) const { return causes_[key]; }

private:
	std::array<loss_cause, LOST_KEYS> causes_;
	std::array<uint64_t, LOST_KEYS> seen_{}; // per key; key 0 holds "other" (unattributed)
	std::array<uint64_t, LOST_KEYS> unwarned_{};
	std::array<uint64_t, LOST_KEYS> warned_ns_{};
	std::array<bool, LOST_KEYS> ever_warned_{};
	uint64_t total_ = 0;
	uint64_t repeat_ns_;
};

// Reads a pi_lost map into per-key sums (keys it does not have stay 0). False: unreadable.
bool read_lost_counts(int fd, std::array<uint64_t, LOST_KEYS> &out);

} // namespace procimage::core
