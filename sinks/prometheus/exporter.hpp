// SPDX-License-Identifier: Apache-2.0
//
// prometheus sink: from records to metric families. Each probe declares, beside its records'
// fields, which become counters, gauges and histograms (the record schema's metrics:
// declared.hpp); the host's own records give the self-metrics; every record is counted by
// probe and event. The series of a target process are removed `expire_s` after the process
// ended; its gauges (which describe the present) as soon as it ends.
//
// Thread safety: one mutex guards the registry. record() and maintain() run on the host
// thread and hold it for one record; scrape() copies the figures under it and formats them
// outside it. Header-only so that the unit tests compile it too.
#pragma once

#include "declared.hpp"
#include "registry.hpp"

#include "../common/format.hpp"

#include <procimage/plugin_api.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace procimage::sinks::prom {

struct options {
	size_t max_series = 10000;
	uint64_t expire_ns = 300ULL * 1000000000ULL;
	unsigned ncpus = 1; // CPUs online: a target's CPU use as a share of the machine
	// Whether process `pid`, started `start_boot_ns` after boot (0: unknown), still runs.
	std::function<bool(uint32_t pid, uint64_t start_boot_ns)> alive;
	uint64_t check_period_ns = 2000000000ULL; // how often maintain() asks alive()
	uint64_t maintain_period_ns = 0;          // maintain() does its work at most this often
	size_t check_batch = 256;                  // processes asked per check, at most
	std::string schema;                        // the joined record schema (its metric declarations)
};

// One BPF program's kernel statistics (bpf_stats.hpp reads them).
struct bpf_prog_stats {
	std::string name;
	uint32_t id = 0;
	uint64_t run_time_ns = 0;
	uint64_t run_cnt = 0;
};

class exporter {
public:
	explicit exporter(options o) : opt_(std::move(o)), reg_(opt_.max_series)
	{
		define();
		reg_.add(*expired_, {}, 0); // counters start at 0, not when first incremented
		declared_.load(opt_.schema, reg_);
	}

	// What the metric declarations asked that could not be done (each left out).
	const std::vector<std::string> &problems() const { return declared_.problems(); }

	// ------------------------------------------------------------------ host thread

	void record(const pi_record &r)
	{
		std::lock_guard lock(mu_);
		// Counted under the instance ("keytime/cpu"), understood by its plugin ("keytime").
		const std::string_view instance = r.probe ? r.probe : "";
		const std::string_view probe = pi_record_plugin(&r);
		const std::string_view event = r.event ? r.event : "";
		reg_.add(*records_, {instance, event}, 1);
		fields f(r);
		if (probe == "procimage") {
			host_record(r, event, f);
			return;
		}
		type_.assign(probe).append(".").append(event);
		if (const auto *rules = declared_.rules(type_))
			for (const auto &rule : *rules)
				if (rule.applies(f))
					apply(rule, r, f);
		if (declared_.ends_process(type_, f)) {
			own(r);
			ended(r);
		}
	}

	// Notice ended processes (alive()) and remove the series of those that ended at least
	// expire_s before `now_ns` (Unix epoch ns, the clock of the records' ts_ns).
	void maintain(uint64_t now_ns)
	{
		std::lock_guard lock(mu_);
		if (last_maintain_ns_ && now_ns < last_maintain_ns_ + opt_.maintain_period_ns)
			return;
		last_maintain_ns_ = now_ns;
		if (opt_.alive && now_ns >= last_check_ns_ + opt_.check_period_ns) {
			last_check_ns_ = now_ns;
			check_alive(now_ns);
		}
		for (auto it = owners_.begin(); it != owners_.end();) {
			const owner_state &o = it->second;
			if (o.ended && now_ns >= o.ended_ns + opt_.expire_ns) {
				drop_series(it->first);
				it = owners_.erase(it);
			} else {
				++it;
			}
		}
	}

	// ------------------------------------------------------------------ any thread

	// The exposition; `bpf` (when given) replaces the BPF program figures first.
	std::string scrape(bool openmetrics, const std::vector<bpf_prog_stats> *bpf = nullptr)
	{
		snapshot s;
		{
			std::lock_guard lock(mu_);
			if (bpf) {
				std::vector<std::pair<std::vector<std::string>, double>> time, runs;
				for (const auto &p : *bpf) {
					std::vector<std::string> l{p.name, std::to_string(p.id)};
					time.emplace_back(l, static_cast<double>(p.run_time_ns));
					runs.emplace_back(l, static_cast<double>(p.run_cnt));
				}
				reg_.replace(*bpf_time_, time);
				reg_.replace(*bpf_runs_, runs);
			}
			reg_.set(*series_, {}, static_cast<double>(reg_.series_count()));
			reg_.set(*max_series_, {}, static_cast<double>(reg_.max_series()));
			for (auto &[name, fam] : reg_.families())
				if (fam.dropped)
					reg_.set(*dropped_, {name}, static_cast<double>(fam.dropped));
			s = reg_.snap();
		}
		return render(s, openmetrics);
	}

	// A scrape took this long (seen from the next scrape on).
	void note_scrape(double seconds)
	{
		std::lock_guard lock(mu_);
		if (auto *s = reg_.at(*scrape_, {})) {
			s->value += seconds;
			s->count++;
		}
	}

	size_t series_count()
	{
		std::lock_guard lock(mu_);
		return reg_.series_count();
	}
	// Label sets refused at the cap since the start, all families.
	uint64_t dropped_series()
	{
		std::lock_guard lock(mu_);
		uint64_t n = 0;
		for (const auto &[name, fam] : reg_.families())
			n += fam.dropped;
		return n;
	}

private:
	struct owner_state {
		uint64_t start = 0; // pid_start_ns, ns since boot; 0: not known yet
		bool ended = false;
		uint64_t ended_ns = 0; // epoch ns
	};

	static constexpr double ns = 1e9;

	void define()
	{
		using T = metric_type;
		// zero_first (registry.hpp) for every count that starts when procimage starts counting:
		// not for mirrors of the kernel's lifetime counts, nor for self-metrics other than the
		// record counts (zero_first -1: the default).
		auto d = [&](const char *name, T t, const char *help, const char *unit, std::vector<std::string> labels,
			     double div = 1, bool self = false, int zero_first = -1) {
			return &reg_.define(name, t, help, unit, std::move(labels), div, self,
					    zero_first < 0 ? !self : zero_first != 0);
		};
		// self
		records_ = d("procimage_exporter_records_total", T::counter, "Records this sink received, by emitting probe and event.",
			     "", {"probe", "event"}, 1, true, 1);
		lost_ = d("procimage_lost_records_total", T::counter,
			  "Records a probe's kernel side could not queue (full ring buffer or map), by probe instance; probe=targets: processes the target map could not hold.",
			  "", {"probe"}, 1, true, 1);
		kernel_records_ = d("procimage_probe_kernel_records_total", T::counter,
				    "Ring-buffer records the host received from a probe's kernel side (known at each deactivation and at the end).",
				    "", {"probe"}, 1, true);
		probe_errors_ = d("procimage_probe_errors_total", T::counter,
				  "Records a probe could not decode and failures of its periodic work (known at the end).", "",
				  {"probe"}, 1, true);
		active_ = d("procimage_probe_active", T::gauge, "1 while the probe is attached and collecting, 0 otherwise.", "",
			    {"probe"}, 1, true);
		activations_ = d("procimage_probe_activations_total", T::counter, "Activations of the probe.", "", {"probe"}, 1,
				 true);
		series_ = d("procimage_exporter_series", T::gauge,
			    "Series this exporter holds, counted as Prometheus does (a histogram is its buckets, _sum and _count); self-metrics excluded.",
			    "", {}, 1, true);
		max_series_ = d("procimage_exporter_max_series", T::gauge, "The series cap (config max_series).", "", {}, 1, true);
		dropped_ = d("procimage_exporter_dropped_series_total", T::counter,
			     "Label sets refused because the series cap was reached, by family.", "", {"family"}, 1, true);
		expired_ = d("procimage_exporter_expired_series_total", T::counter,
			     "Series removed because their process ended expire_s earlier.", "", {}, 1, true);
		scrape_ = d("procimage_exporter_scrape_duration_seconds", T::summary,
			    "Time taken to build the exposition, per scrape.", "seconds", {}, 1, true);
		bpf_time_ = d("procimage_bpf_prog_run_seconds_total", T::counter,
			      "Time spent running each BPF program of this procimage (kernel BPF statistics; config bpf_stats).",
			      "seconds", {"prog", "id"}, ns, true);
		bpf_runs_ = d("procimage_bpf_prog_runs_total", T::counter,
			      "Runs of each BPF program of this procimage (kernel BPF statistics; config bpf_stats).", "",
			      {"prog", "id"}, 1, true);
	}

	// The owner of a target series: the record's process. Notes its start; a different start
	// means the pid was reused: the earlier process's series go at once.
	uint32_t own(const pi_record &r)
	{
		if (!r.pid)
			return 0;
		auto [it, fresh] = owners_.try_emplace(r.pid);
		owner_state &o = it->second;
		if (r.pid_start_ns) {
			if (o.start && !same_start(o.start, r.pid_start_ns)) {
				drop_series(r.pid);
				o = owner_state{};
			}
			o.start = r.pid_start_ns;
		}
		return r.pid;
	}
	void drop_series(uint32_t pid)
	{
		reg_.add(*expired_, {}, static_cast<double>(reg_.remove_owner(pid)));
	}
	// Two readings of one process's start (ns since boot): the same within 1 ms.
	static bool same_start(uint64_t a, uint64_t b) { return (a > b ? a - b : b - a) <= 1000000; }

	void ended(const pi_record &r)
	{
		auto it = owners_.find(r.pid);
		if (it == owners_.end() || it->second.ended)
			return;
		if (r.pid_start_ns && it->second.start && !same_start(it->second.start, r.pid_start_ns))
			return; // about an earlier process with this pid
		it->second.ended = true;
		it->second.ended_ns = r.ts_ns;
		reg_.end_owner_gauges(r.pid);
	}

	void check_alive(uint64_t now_ns)
	{
		std::vector<uint32_t> pids;
		for (const auto &[pid, o] : owners_)
			if (!o.ended)
				pids.push_back(pid);
		if (pids.empty())
			return;
		std::sort(pids.begin(), pids.end());
		// round robin over the live processes, check_batch at a time
		auto from = std::lower_bound(pids.begin(), pids.end(), check_cursor_);
		size_t start = static_cast<size_t>(from - pids.begin()) % pids.size();
		size_t n = std::min(pids.size(), opt_.check_batch);
		for (size_t k = 0; k < n; k++) {
			uint32_t pid = pids[(start + k) % pids.size()];
			owner_state &o = owners_[pid];
			if (!opt_.alive(pid, o.start)) {
				o.ended = true;
				o.ended_ns = now_ns;
				reg_.end_owner_gauges(pid);
			}
			check_cursor_ = pid + 1;
		}
	}

	static std::string_view comm(const pi_record &r) { return r.comm ? r.comm : ""; }

	// ------------------------------------------------------------------ host records

	void host_record(const pi_record &r, std::string_view event, const fields &f)
	{
		std::string_view src = f.str("source");
		if (event == "lost") {
			reg_.set_max(*lost_, {src}, f.num("lost_total"));
		} else if (event == "summary") {
			reg_.set_max(*lost_, {src}, f.num("lost_total"));
			reg_.set_max(*kernel_records_, {src}, f.num("records"));
			reg_.set_max(*probe_errors_, {src}, f.num("errors"));
		} else if (event == "activated") {
			if (const char *cg = pi_record_cgroup(&r))
				target_cgroups_[std::string(src)] = cg;
			else
				target_cgroups_.erase(std::string(src));
			reg_.set_max(*lost_, {src}, 0);
			reg_.set(*active_, {src}, 1);
			reg_.add(*activations_, {src}, 1);
		} else if (event == "deactivated") {
			reg_.set(*active_, {src}, 0);
			reg_.add(*kernel_records_, {src}, f.num("records"));
		}
	}

	// ------------------------------------------------------------------ declared metrics

	void apply(const metric_rule &rule, const pi_record &r, const fields &f)
	{
		label_text_.resize(rule.labels.size());
		label_view_.resize(rule.labels.size());
		for (size_t i = 0; i < rule.labels.size(); i++) {
			if (rule.labels[i].target_cgroup) {
				auto t = r.probe ? target_cgroups_.find(r.probe) : target_cgroups_.end();
				label_text_[i] = t != target_cgroups_.end() && f.str("scope") != "system" ? t->second : "";
			} else {
				label_text_[i] = rule.labels[i].of(f);
			}
			label_view_[i] = label_text_[i];
		}
		std::span<const std::string_view> labels(label_view_);
		uint32_t owner = rule.per_process ? own(r) : 0;
		family &fam = *rule.fam;
		switch (rule.op) {
		case metric_op::count:
			if (fam.meta->type == metric_type::histogram)
				return; // (refused by the schema check)
			if (auto *s = reg_.at(fam, labels, owner))
				s->value += 1;
			return;
		case metric_op::set:
			if (auto *s = reg_.at(fam, labels, owner))
				s->value = rule.value.eval(f, opt_.ncpus);
			return;
		case metric_op::total:
			reg_.add_total(fam, labels, rule.value.eval(f, opt_.ncpus), owner);
			return;
		case metric_op::add:
			break;
		}
		if (fam.meta->type != metric_type::histogram) {
			if (auto *s = reg_.at(fam, labels, owner))
				s->value += rule.value.eval(f, opt_.ncpus);
		} else if (rule.log2) {
			auto slots = f.u64v(*rule.value.single_field());
			if (auto *s = reg_.at(fam, labels, owner)) {
				for (size_t i = 0; i < slots.size(); i++)
					(*s->buckets)[bucket_of_slot(i)] += slots[i];
				s->value += f.num(rule.sum);
			}
		} else {
			double v = rule.value.eval(f, opt_.ncpus);
			if (auto *s = reg_.at(fam, labels, owner)) {
				(*s->buckets)[bucket_of_slot(slot_of_value(v < 0 ? 0 : static_cast<uint64_t>(v)))]++;
				s->count++;
				s->value += v;
			}
		}
	}

	options opt_;
	std::mutex mu_;
	registry reg_;
	std::unordered_map<uint32_t, owner_state> owners_;
	declared_metrics declared_;
	std::string type_;                           // "plugin.event" of the record at hand
	std::map<std::string, std::string, std::less<>> target_cgroups_; // probe id -> its cgroup target's path
	std::vector<std::string> label_text_;        // its label values, kept from record to record
	std::vector<std::string_view> label_view_;
	uint64_t last_check_ns_ = 0;
	uint64_t last_maintain_ns_ = 0;
	uint32_t check_cursor_ = 0;

	family *records_, *lost_, *kernel_records_, *probe_errors_, *active_, *activations_, *series_, *max_series_,
		*dropped_, *expired_, *scrape_, *bpf_time_, *bpf_runs_;
};

} // namespace procimage::sinks::prom
