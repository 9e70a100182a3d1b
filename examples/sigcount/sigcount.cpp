// SPDX-License-Identifier: Apache-2.0
//
// sigcount, user side: every interval, one "signals" record per (process, signal) that
// received signals since the last one.
#include <procimage/bpf.hpp>
#include <procimage/config.hpp>
#include <procimage/sdk.hpp>
#include <probe_sigcount_record_schema.h>

#include <linux/types.h>

#include "sigcount.h"
#include "sigcount.skel.h"

#include <map>

namespace {

namespace sdk = procimage::sdk;

class sigcount final : public sdk::probe {
public:
	static void validate(const std::string &text) { sdk::config_reader(text).finish(); }

	sigcount(const pi_host &host, const std::string &text) : sdk::probe(host) { validate(text); }
	~sigcount() override
	{
		links_.clear();
		sigcount_bpf__destroy(skel_);
	}

	void load(pi_probe_io &io) override
	{
		skel_ = sigcount_bpf__open();
		if (!skel_)
			throw std::runtime_error("cannot open the sigcount BPF object");
		sdk::set_common_rodata(skel_->rodata, host(), 0);
		sdk::reuse_shared_maps(skel_->obj, host());
		if (int err = sigcount_bpf__load(skel_))
			throw std::runtime_error("cannot load the sigcount BPF object: " + sdk::errno_text(err));
		io.n_ringbufs = 0;
		io.lost_map_fd = sdk::lost_map_fd(skel_->obj);
	}
	void attach(const pi_target &) override
	{
		if (links_.empty())
			links_.attach_all(skel_->obj);
	}
	void detach() override { links_.clear(); }
	void on_data(uint32_t, const void *, size_t) override {}

	void on_tick(uint64_t now_boot_ns, bool) override
	{
		if (!last_tick_ns_)
			last_tick_ns_ = now_boot_ns - host().interval_ms * 1000000ULL;
		int fd = bpf_map__fd(skel_->maps.sig_counts);
		sigcount_key key{}, next{};
		void *prev = nullptr;
		while (bpf_map_get_next_key(fd, prev, &next) == 0) {
			key = next;
			prev = &key;
			__u64 total = 0;
			if (bpf_map_lookup_elem(fd, &key, &total) != 0)
				continue;
			uint64_t &seen = seen_[{key.tgid, key.sig}];
			if (total == seen)
				continue;
			// a periodic row about one process (docs/events.md): scope, window, interval_ns
			sdk::record r("sigcount", "signals");
			r.ts(now_boot_ns + host().boot_to_epoch_ns).ids(key.tgid, 0).pid_start(key.start_ns);
			r.str("scope", "process").str("window", "interval").u64("interval_ns", now_boot_ns - last_tick_ns_,
										    PI_FMT_DURATION_NS);
			r.u64("signal", key.sig, PI_FMT_SIGNAL).u64("count", total - seen).u64("count_total", total);
			seen = total;
			r.emit(host());
		}
		last_tick_ns_ = now_boot_ns;
	}

private:
	sigcount_bpf *skel_ = nullptr;
	sdk::links links_;
	std::map<std::pair<uint32_t, uint32_t>, uint64_t> seen_;
	uint64_t last_tick_ns_ = 0;
};

} // namespace

// The records' schema (records.json, compiled in by procimage_record_schema in CMakeLists.txt)
// also declares the Prometheus series the prometheus sink makes of them.
PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA(sigcount, "sigcount", "0.1.0", "signals delivered to the target, per process and signal",
				   PROCIMAGE_RECORD_SCHEMA);
