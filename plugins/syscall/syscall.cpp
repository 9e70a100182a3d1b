// SPDX-License-Identifier: Apache-2.0
//
// syscall probe, user side: load/attach syscall.bpf.c, read its in-kernel statistics at every
// tick, decode its sequence batches, report calls stuck in progress.
#include "syscall_report.hpp"
#include "syscall_records.h"
#include "syscall.skel.h"

#include <procimage/bpf.hpp>
#include <procimage/config.hpp>
#include <procimage/sdk.hpp>
#include <probe_syscall_record_schema.h>

#include <seccomp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include <time.h>
#include <unistd.h>

namespace procimage::syscalls {

namespace sdk = procimage::sdk;

struct config {
	uint32_t batch = 10;
	// Sequence records: on for a target, off system-wide (every call of the system, streamed,
	// would outrun any ring buffer) unless set.
	std::optional<bool> sequence;
	std::string by = "auto";
	uint32_t inprogress_ms = 1000;
	std::string system = "latency";
	std::string system_rows = "auto";
	uint32_t max_keys = 16384;
	uint32_t ringbuf_kb = 1024;

	explicit config(const std::string &text)
	{
		sdk::config_reader r(text);
		batch = static_cast<uint32_t>(r.get_int("batch", 10, 1, SC_BATCH_MAX));
		if (r.json().contains("sequence"))
			sequence = r.get_bool("sequence", true);
		by = r.get_enum("by", "auto", {"auto", "thread", "process", "none"});
		inprogress_ms = static_cast<uint32_t>(r.get_int("inprogress_ms", 1000, 0, 3600000));
		system = r.get_enum("system", "latency", {"latency", "counts", "off"});
		system_rows = r.get_enum("system_rows", "auto", {"auto", "target", "all", "none"});
		max_keys = static_cast<uint32_t>(r.get_int("max_keys", 16384, 64, 1 << 20));
		ringbuf_kb = static_cast<uint32_t>(r.get_int("ringbuf_kb", 1024, 64, 1 << 20));
		if (ringbuf_kb & (ringbuf_kb - 1))
			throw sdk::config_error("ringbuf_kb: expected a power of two, got " +
						std::to_string(ringbuf_kb));
		if (system == "off" && r.json().contains("system_rows"))
			throw sdk::config_error("system_rows: needs system figures (\"system\" is \"off\")");
		r.finish();
	}
};

// x86_64 syscall names from libseccomp, cached.
class names {
public:
	const std::string &of(uint32_t nr)
	{
		auto it = cache_.find(nr);
		if (it != cache_.end())
			return it->second;
		std::string n;
		// the build's own architecture: the numbers are those of the kernel it runs on
		if (nr <= 0x7fffffff) {
			char *s = seccomp_syscall_resolve_num_arch(seccomp_arch_native(), static_cast<int>(nr));
			if (s) {
				n = s;
				std::free(s);
			}
		}
		if (n.empty())
			n = "nr_" + std::to_string(static_cast<int32_t>(nr));
		return cache_.emplace(nr, std::move(n)).first->second;
	}
	// The name of a statistics slot (SC_NR_OTHER gathers the numbers outside 0..510).
	const std::string &of_slot(uint32_t slot)
	{
		static const std::string other = "other";
		return slot == SC_NR_OTHER ? other : of(slot);
	}

private:
	std::unordered_map<uint32_t, std::string> cache_;
};

const char *reason_name(uint32_t r)
{
	switch (r) {
	case SC_FLUSH_FULL: return "full";
	case SC_FLUSH_INTERVAL: return "interval";
	case SC_FLUSH_EXIT: return "exit";
	case SC_FLUSH_END: return "end";
	default: return "unknown";
	}
}

// Identity of a per-target row (a thread or a process).
struct owner {
	uint32_t pid = 0;
	uint32_t tid = 0;
	uint64_t pid_start_ns = 0;
	std::string comm;
};

class syscall_probe final : public sdk::probe {
public:
	static void validate(const std::string &text) { config c(text); }

	syscall_probe(const pi_host &host, const std::string &text) : sdk::probe(host), cfg_(text)
	{
		ncpu_ = libbpf_num_possible_cpus();
		if (ncpu_ <= 0)
			throw std::runtime_error("cannot count the possible CPUs: " + sdk::errno_text(ncpu_));
	}

	~syscall_probe() override
	{
		links_.clear();
		if (iter_link_)
			bpf_link__destroy(iter_link_);
		syscall_bpf__destroy(skel_);
	}

	void load(pi_probe_io &io) override
	{
		sdk::require_kernel_for("syscall");
		skel_ = syscall_bpf__open();
		if (!skel_)
			throw std::runtime_error("cannot open the syscall BPF object: " + sdk::errno_text(errno));
		sdk::set_common_rodata(skel_->rodata, host(), cfg_.ringbuf_kb * 1024ULL);
		skel_->rodata->sc_system = cfg_.system == "off"      ? SC_SYSTEM_OFF
					   : cfg_.system == "counts" ? SC_SYSTEM_COUNTS
								     : SC_SYSTEM_LATENCY;
		skel_->rodata->sc_inprogress_ns = cfg_.inprogress_ms * 1000000ULL;
		if (const pi_filters *f = sdk::host_filters(host()); f && f->n_syscalls) {
			skel_->rodata->sc_nr_filter = true;
			static_assert(sizeof f->syscalls == sizeof skel_->rodata->sc_nr_mask);
			std::memcpy(skel_->rodata->sc_nr_mask, f->syscalls, sizeof f->syscalls);
		}
		sdk::reuse_shared_maps(skel_->obj, host());
		bpf_map__set_max_entries(skel_->maps.sc_events, cfg_.ringbuf_kb * 1024);
		bpf_map__set_max_entries(skel_->maps.sc_target, cfg_.max_keys);
		bpf_map__set_max_entries(skel_->maps.sc_owners, cfg_.max_keys);
		int err = syscall_bpf__load(skel_);
		if (err)
			throw std::runtime_error("cannot load the syscall BPF object: " + sdk::errno_text(err));
		iter_link_ = bpf_program__attach_iter(skel_->progs.sc_scan, nullptr);
		if (!iter_link_)
			throw std::runtime_error("cannot create the task iterator: " + sdk::errno_text(errno));
		io.n_ringbufs = 1;
		io.ringbuf_fds[0] = bpf_map__fd(skel_->maps.sc_events);
		io.lost_map_fd = sdk::lost_map_fd(skel_->obj);
		sdk::name_lost_causes(io, {{SC_LOST_KEYS, "sc_target: a (process, system call) row found the per-target map full (raise syscall.max_keys)"},
					   {SC_LOST_STORAGE, "sc_task: a thread's task storage could not be allocated (kernel memory)"}});
	}

	void attach(const pi_target &target) override
	{
		// Activation options (procimage-ctl -s N): {"batch": N} turns sequences on with
		// batches of N calls, for this activation only.
		uint32_t batch = cfg_.batch;
		bool sequence = cfg_.sequence.value_or(target.kind != PI_TARGET_ALL);
		if (target.options && *target.options) {
			auto opts = nlohmann::json::parse(target.options);
			for (const auto &[k, v] : opts.items()) {
				if (k != "batch")
					throw std::runtime_error("activation option " + k + ": unknown (the syscall probe takes \"batch\")");
				if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > SC_BATCH_MAX)
					throw std::runtime_error("activation option batch: expected an integer in 1.." +
								 std::to_string(SC_BATCH_MAX));
				batch = v.get<uint32_t>();
				sequence = true;
			}
		}
		detach(); // (the host detaches first; a second attach must not leave batches behind)
		uint64_t now = sdk::boot_now_ns();
		if (measured_)
			report(now, false); // what an earlier activation counted and nobody reported yet
		reset();
		by_thread_ = cfg_.by == "thread" || (cfg_.by == "auto" && target.kind == PI_TARGET_TID);
		// System-wide, the figures are the system's, per syscall: rows for every process of
		// the machine are asked for with by = "process" or "thread".
		rows_ = cfg_.by != "none" && !(cfg_.by == "auto" && target.kind == PI_TARGET_ALL);
		system_rows_ = cfg_.system_rows != "auto" ? cfg_.system_rows : rows_ ? "target" : "all";
		skel_->bss->sc_rows = rows_ ? 1 : 0;
		sequence_ = sequence;
		skel_->bss->sc_by_thread = by_thread_ ? 1 : 0;
		skel_->bss->sc_sequence = sequence ? 1 : 0;
		skel_->bss->sc_batch_len = batch;
		skel_->bss->sc_run = ++run_;
		skel_->bss->sc_epoch = ++epoch_;
		skel_->bss->sc_attach_ns = now;
		last_tick_ns_ = now;
		start_ns_ = now;
		// The switch and exit hooks first: an entry noted by sys_enter must never miss them.
		try {
			links_.attach(skel_->progs.sc_switch);
			links_.attach(skel_->progs.sc_exit);
			links_.attach(skel_->progs.sc_task_exit);
			links_.attach(skel_->progs.sc_exec);
			links_.attach(skel_->progs.sc_enter);
		} catch (...) {
			links_.clear();
			throw;
		}
		measured_ = true;
	}

	void detach() override
	{
		if (links_.empty())
			return;
		links_.clear();
		// Nothing runs any more: send the partial batches. (The host switched the probe off
		// and drained the ring buffer before calling detach, so each thread's earlier batches
		// are already out and the order holds.)
		if (sequence_)
			scan(SC_ITER_FLUSH, sdk::boot_now_ns());
	}

	void on_data(uint32_t, const void *data, size_t len) override
	{
		if (len < sizeof(pi_event_header))
			throw std::runtime_error("short record (" + std::to_string(len) + " bytes)");
		const auto *h = static_cast<const pi_event_header *>(data);
		if (h->kind == SC_END && len >= sizeof(sc_end))
			on_end(*static_cast<const sc_end *>(data));
		else if (h->kind == SC_BATCH)
			on_batch(data, len);
		else
			throw std::runtime_error("unknown record kind " + std::to_string(h->kind) + " of " +
						 std::to_string(len) + " bytes");
	}

	void on_tick(uint64_t now, bool final) override
	{
		if (!skel_ || !measured_)
			return;
		report(now, !links_.empty());
		if (links_.empty())
			measured_ = false; // the activation's last figures are out: nothing to read until the next one
		if (!final && !links_.empty() && cfg_.inprogress_ms)
			scan(SC_ITER_INPROGRESS, now);
	}

private:
	// ---------------------------------------------------------------- sequences

	void on_batch(const void *data, size_t len)
	{
		const size_t fixed = offsetof(sc_batch, calls);
		if (len < fixed)
			throw std::runtime_error("short batch record (" + std::to_string(len) + " bytes)");
		const auto *b = static_cast<const sc_batch *>(data);
		size_t n = std::min<size_t>({b->n, SC_BATCH_MAX, (len - fixed) / sizeof(sc_call)});
		// one record and its arrays, kept from batch to batch: nothing is allocated per batch
		auto &names = seq_names_;
		names.clear();
		for (auto *v : {&seq_nrs_, &seq_lats_, &seq_rets_, &seq_errs_})
			v->clear();
		for (size_t i = 0; i < n; i++) {
			const sc_call &c = b->calls[i];
			bool err = is_error(c.ret);
			names.push_back(names_.of(c.nr));
			seq_nrs_.push_back(c.nr);
			seq_lats_.push_back(c.lat_ns);
			seq_rets_.push_back(err ? 0 : static_cast<uint64_t>(c.ret));
			seq_errs_.push_back(err ? static_cast<uint64_t>(-c.ret) : 0);
		}
		sdk::record &r = seq_.reset("syscall", "sequence");
		r.header(b->h, host());
		r.u64("first", b->first)
			.u64("count", n)
			.str("reason", reason_name(b->reason))
			.strv("syscalls", std::span<const std::string_view>(names))
			.u64v("nr", seq_nrs_)
			.u64v("lat_ns", seq_lats_)
			.u64v("ret", seq_rets_)
			.u64v("errno", seq_errs_);
		r.emit(host());
	}

	// ---------------------------------------------------------------- task iterator

	void scan(uint32_t mode, uint64_t now)
	{
		skel_->bss->sc_iter_mode = mode;
		std::vector<char> buf = sdk::read_iter(iter_link_);
		size_t pos = 0;
		while (pos < buf.size()) {
			const auto *h = reinterpret_cast<const pi_event_header *>(buf.data() + pos);
			if (pos + sizeof(pi_event_header) > buf.size() || h->size < sizeof(pi_event_header) ||
			    pos + h->size > buf.size())
				throw std::runtime_error("task iterator: malformed record at byte " + std::to_string(pos) +
							 " of " + std::to_string(buf.size()));
			if (h->kind == SC_BATCH)
				on_batch(h, h->size);
			else if (h->kind == SC_INPROGRESS && h->size >= sizeof(sc_inprogress))
				on_inprogress(*reinterpret_cast<const sc_inprogress *>(h), now);
			pos += h->size;
		}
	}

	void on_inprogress(const sc_inprogress &p, uint64_t)
	{
		sdk::record r("syscall", "inprogress");
		r.header(p.h, host());
		r.str("syscall", names_.of(p.nr))
			.u64("nr", p.nr)
			.u64("elapsed_ns", p.elapsed_ns, PI_FMT_DURATION_NS)
			.u64("started_ns", p.enter_ns + host().boot_to_epoch_ns)
			.boolean("before_start", p.flags & SC_INPROGRESS_BEFORE_START)
			.u64("threshold_ns", cfg_.inprogress_ms * 1000000ULL, PI_FMT_DURATION_NS);
		r.emit(host());
	}

	// ---------------------------------------------------------------- statistics

	void reset()
	{
		// system-wide array: zero every slot on every CPU
		std::vector<sc_stats> zeros(static_cast<size_t>(ncpu_));
		int sys_fd = bpf_map__fd(skel_->maps.sc_sys);
		for (uint32_t k = 0; k < SC_NR_SLOTS; k++)
			if (bpf_map_update_elem(sys_fd, &k, zeros.data(), BPF_ANY) != 0)
				throw std::runtime_error("cannot reset the system figures: " + sdk::errno_text(errno));
		// per-target hash: empty it
		sdk::clear_map(bpf_map__fd(skel_->maps.sc_target), sizeof(sc_key));
		sdk::clear_map(bpf_map__fd(skel_->maps.sc_owners), sizeof(uint32_t));
		prev_target_.clear();
		prev_sys_.clear();
		owners_.clear();
		end_slots_.clear();
		sys_slots_.clear();
		sys_waiting_.clear();
	}

	static uint64_t key_of(const sc_key &k) { return (static_cast<uint64_t>(k.id) << 32) | k.nr; }

	struct row {
		uint32_t id;
		uint32_t slot;
		figures now;
		interval d;
	};

	// One thread's or process's keys at a report: rows, the syscalls it made in the interval;
	// all_keys, every syscall it made since collection began.
	struct per_owner {
		std::vector<row> rows, all_keys;
		figures cum;
		std::map<uint32_t, uint64_t> cum_counts;

		// A key's figures: returns the interval's (since the last report of that key).
		interval take(uint32_t id, uint32_t slot, const figures &f, figures &before)
		{
			interval d = since(f, before);
			before = f;
			cum += f;
			if (f.count) {
				cum_counts[slot] = f.count;
				all_keys.push_back({id, slot, f, d});
			}
			if (d.count)
				rows.push_back({id, slot, f, d});
			return d;
		}
	};

	// The `interval` rows of one id with calls in the interval, most called first, then its
	// `totals` row; then the `total` rows (since collection began) of the same syscalls and its
	// `totals` total row. With all (the id's figures are final: it ended, or collection ends),
	// the total rows cover every syscall it made, even without calls in the interval. Adds the
	// slots of its interval rows to `slots`.
	void emit_owner(uint32_t id, per_owner &po, uint64_t ts, uint64_t interval_ns, uint64_t since_ns, bool all,
			std::set<uint32_t> &slots)
	{
		if (po.rows.empty() && !(all && po.cum.count))
			return;
		std::sort(po.rows.begin(), po.rows.end(), [](const row &a, const row &b) {
			return a.d.count != b.d.count ? a.d.count > b.d.count : a.slot < b.slot;
		});
		const owner &o = owner_of(id);
		const char *scope = by_thread_ ? "thread" : "process";
		interval sum;
		std::map<uint32_t, uint64_t> counts;
		for (const row &rw : po.rows) {
			slots.insert(rw.slot);
			sum += rw.d;
			counts[rw.slot] = rw.d.count;
			emit_row(scope, "interval", o, ts, rw.slot, rw.d, interval_ns);
		}
		if (!po.rows.empty())
			emit_totals(scope, "interval", o, ts, sum, counts, interval_ns);
		std::vector<row> totals = all ? po.all_keys : po.rows;
		std::sort(totals.begin(), totals.end(), [](const row &a, const row &b) {
			return a.now.count != b.now.count ? a.now.count > b.now.count : a.slot < b.slot;
		});
		for (const row &rw : totals)
			emit_row(scope, "total", o, ts, rw.slot, whole(rw.now), since_ns);
		emit_totals(scope, "total", o, ts, whole(po.cum), po.cum_counts, since_ns);
	}

	// Cumulative figures (since collection began) as the figures of a `total` row.
	static interval whole(const figures &f)
	{
		interval d;
		d.count = f.count;
		d.errors = f.errors;
		d.total_ns = f.total_ns;
		d.max_ns = f.max_ns;
		d.min_ns = f.count ? f.min_ns : 0;
		d.hist = f.hist;
		return d;
	}

	// An id with keys ended (its thread, or its process's last thread, exited): its figures are
	// final. Report what it did since the last tick now and free its keys, so that a target
	// that runs many short processes holds keys only for those alive.
	void on_end(const sc_end &e)
	{
		if (!measured_)
			return;
		int t_fd = bpf_map__fd(skel_->maps.sc_target), o_fd = bpf_map__fd(skel_->maps.sc_owners);
		sc_owner k{};
		if (bpf_map_lookup_elem(o_fd, &e.id, &k) != 0 || k.pid_start_ns != e.h.pid_start_ns)
			return; // freed at a tick already, or the id is someone else's by now
		per_owner po;
		end_stats_.resize(static_cast<size_t>(ncpu_));
		for (uint32_t w = 0; w < SC_NR_SLOTS / 64; w++)
			for (uint64_t bits = k.slots[w]; bits; bits &= bits - 1) {
				sc_key key{e.id, w * 64 + static_cast<uint32_t>(__builtin_ctzll(bits))};
				if (take_key(t_fd, key, end_stats_.data()) != 0)
					continue;
				auto prev = prev_target_.find(key_of(key));
				figures before = prev != prev_target_.end() ? prev->second : figures{};
				if (prev != prev_target_.end())
					prev_target_.erase(prev);
				po.take(key.id, key.nr, merge(end_stats_.data(), end_stats_.size(), epoch_), before);
			}
		uint64_t now = e.h.ts_boot_ns;
		emit_owner(e.id, po, now + host().boot_to_epoch_ns, now - std::min(now, last_tick_ns_),
			   now - std::min(now, start_ns_), true, end_slots_);
		bpf_map_delete_elem(o_fd, &e.id);
		owners_.erase(e.id);
	}

	// An ended id's key: its figures into value (ncpu_ entries), and the key out of the map, in
	// one call where the kernel has it for hash maps (Linux 5.14), else two. Non-zero when the
	// key is not there.
	int take_key(int fd, const sc_key &key, sc_stats *value)
	{
		if (lookup_and_delete_) {
			if (bpf_map_lookup_and_delete_elem(fd, &key, value) == 0)
				return 0;
			if (errno == ENOENT)
				return -1;
			lookup_and_delete_ = false; // EINVAL or ENOTSUPP before 5.14: two calls from now on
		}
		if (bpf_map_lookup_elem(fd, &key, value) != 0)
			return -1;
		bpf_map_delete_elem(fd, &key);
		return 0;
	}

	// Read every counter, emit what changed since the last report. `running`: the kernel is
	// still counting, so start a new interval first.
	void report(uint64_t now, bool running)
	{
		uint64_t ended = epoch_;
		if (running)
			skel_->bss->sc_epoch = ++epoch_;
		uint64_t interval_ns = now - std::min(now, last_tick_ns_);
		uint64_t since_ns = now - std::min(now, start_ns_);
		last_tick_ns_ = now;
		uint64_t ts = now + host().boot_to_epoch_ns;
		// Read the system figures at once, before any record is emitted: a call that ends
		// after the new interval began counts in this one (its count is read now) but has its
		// max/min in the next; the shorter that gap, the fewer such calls. Emitting first
		// would stretch it, and a reader of procimage's own output ends its read() in it.
		std::vector<sc_stats> sys;
		bool have_sys = false;
		if (cfg_.system != "off") {
			sys.resize(static_cast<size_t>(ncpu_) * SC_NR_SLOTS);
			have_sys = read_system(sys);
		}

		// ---- per target: one row per (thread or process, syscall) with calls in the interval,
		// then one totals row per thread or process, each set followed by its `total` rows
		std::map<uint32_t, per_owner> owners;
		std::vector<sc_stats> stats(static_cast<size_t>(ncpu_));
		int t_fd = bpf_map__fd(skel_->maps.sc_target);
		sc_key key{}, next{};
		std::vector<sc_key> gone;
		std::map<uint32_t, size_t> keys_left; // per id, keys that stay in the map
		for (const sc_key *prev = nullptr; bpf_map_get_next_key(t_fd, prev, &next) == 0; prev = &key) {
			key = next;
			if (bpf_map_lookup_elem(t_fd, &key, stats.data()) != 0)
				continue;
			const owner &o = owner_of(key.id);
			interval d = owners[key.id].take(key.id, key.nr, merge(stats.data(), stats.size(), ended),
							 prev_target_[key_of(key)]);
			if (!d.count && running && !alive(o))
				gone.push_back(key);
			else
				keys_left[key.id]++;
		}
		// keys of ended tasks whose last figures were reported earlier: free them, and the
		// task's identity with its last key
		int o_fd = bpf_map__fd(skel_->maps.sc_owners);
		for (const auto &k : gone) {
			bpf_map_delete_elem(t_fd, &k);
			prev_target_.erase(key_of(k));
			if (!keys_left.count(k.id)) {
				bpf_map_delete_elem(o_fd, &k.id);
				owners_.erase(k.id);
			}
		}

		std::set<uint32_t> target_slots;
		target_slots.swap(end_slots_); // those of ids that ended in the interval
		for (auto &[id, po] : owners)
			emit_owner(id, po, ts, interval_ns, since_ns, !running, target_slots);

		// ---- the whole system: its interval rows, then the total rows of the same syscalls
		// (at the end: of every syscall that had a system row in this activation)
		if (!have_sys)
			return;
		const owner system{0, 0, 0, ""};
		interval sum;
		figures all_cum;
		std::map<uint32_t, uint64_t> counts, cum_counts;
		std::vector<std::pair<uint32_t, figures>> totals;
		for (uint32_t s = 0; s < SC_NR_SLOTS; s++) {
			figures f = merge(&sys[static_cast<size_t>(s) * ncpu_], ncpu_, ended);
			figures &before = prev_sys_[s];
			interval d = since(f, before);
			before = f;
			sum += d;
			all_cum += f;
			if (d.count)
				counts[s] = d.count;
			if (f.count)
				cum_counts[s] = f.count;
			// With system rows for the target's syscalls: a call of the target that returned
			// between the read of the system figures and the read of the target's counts in
			// the target's interval and in the system's next one. A row has at least one call,
			// so that syscall's system row waits for the interval that has its calls.
			bool asked = system_rows_ == "all" ? d.count > 0
				     : system_rows_ == "target" ? target_slots.count(s) > 0 || sys_waiting_.count(s) > 0
								      : false;
			bool want = asked && d.count > 0;
			if (want) {
				emit_row("system", "interval", system, ts, s, d, interval_ns);
				sys_slots_.insert(s);
				sys_waiting_.erase(s);
			} else if (asked) {
				sys_waiting_.insert(s);
			}
			if (f.count && (want || (!running && (sys_slots_.count(s) || sys_waiting_.count(s)))))
				totals.emplace_back(s, f);
		}
		if (sum.count)
			emit_totals("system", "interval", system, ts, sum, counts, interval_ns);
		for (const auto &[slot, f] : totals)
			emit_row("system", "total", system, ts, slot, whole(f), since_ns);
		if (sum.count || (!running && all_cum.count))
			emit_totals("system", "total", system, ts, whole(all_cum), cum_counts, since_ns);
	}

	bool read_system(std::vector<sc_stats> &out)
	{
		int fd = bpf_map__fd(skel_->maps.sc_sys);
		std::vector<uint32_t> keys(SC_NR_SLOTS);
		uint32_t count = SC_NR_SLOTS, out_batch = 0;
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		int err = bpf_map_lookup_batch(fd, nullptr, &out_batch, keys.data(), out.data(), &count, &opts);
		if ((err == 0 || errno == ENOENT) && count == SC_NR_SLOTS) {
			// the values come in key order
			for (uint32_t i = 0; i < count; i++)
				if (keys[i] != i)
					return read_system_slow(out);
			return true;
		}
		return read_system_slow(out);
	}

	bool read_system_slow(std::vector<sc_stats> &out)
	{
		int fd = bpf_map__fd(skel_->maps.sc_sys);
		for (uint32_t k = 0; k < SC_NR_SLOTS; k++)
			if (bpf_map_lookup_elem(fd, &k, &out[static_cast<size_t>(k) * ncpu_]) != 0)
				return false;
		return true;
	}

	// Who a per-target id is, from the kernel's sc_owners (refreshed at exec), kept here once
	// read so that an id whose entry was dropped still has a name.
	const owner &owner_of(uint32_t id)
	{
		owner &o = owners_[id];
		sc_owner k{};
		if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.sc_owners), &id, &k) == 0) {
			o.pid = k.pid;
			o.tid = k.tid;
			o.pid_start_ns = k.pid_start_ns;
			o.comm.assign(k.comm, strnlen(k.comm, sizeof k.comm));
		} else if (!o.pid) {
			o.pid = by_thread_ ? 0 : id;
			o.tid = by_thread_ ? id : 0;
		}
		return o;
	}

	static bool alive(const owner &o)
	{
		if (!o.pid)
			return false;
		std::string path = "/proc/" + std::to_string(o.pid);
		if (o.tid)
			path += "/task/" + std::to_string(o.tid);
		return access(path.c_str(), F_OK) == 0;
	}

	sdk::record make(const char *event, const owner &o, uint64_t ts)
	{
		sdk::record r("syscall", event);
		r.ts(ts).ids(o.pid, o.tid).comm(o.comm).pid_start(o.pid_start_ns);
		return r;
	}

	// window: "interval" (d is the interval's, interval_ns its length) or "total" (d is since
	// collection began, interval_ns the time since then).
	void emit_row(const char *scope, const char *window, const owner &o, uint64_t ts, uint32_t slot,
		      const interval &d, uint64_t interval_ns)
	{
		auto r = make("syscall", o, ts);
		r.str("scope", scope)
			.str("window", window)
			.u64("interval_ns", interval_ns, PI_FMT_DURATION_NS)
			.str("syscall", names_.of_slot(slot))
			.u64("nr", slot);
		figures_fields(r, d);
		r.emit(host());
	}

	void emit_totals(const char *scope, const char *window, const owner &o, uint64_t ts, const interval &d,
			 const std::map<uint32_t, uint64_t> &counts, uint64_t interval_ns)
	{
		auto r = make("totals", o, ts);
		r.str("scope", scope).str("window", window).u64("interval_ns", interval_ns, PI_FMT_DURATION_NS);
		figures_fields(r, d);
		std::vector<std::string> n;
		std::vector<uint64_t> v;
		for (const auto &[slot, count] : top(counts, 3)) {
			n.push_back(names_.of_slot(slot));
			v.push_back(count);
		}
		r.strv("top", n).u64v("top_count", std::move(v));
		r.emit(host());
	}

	static void figures_fields(sdk::record &r, const interval &d)
	{
		r.u64("count", d.count)
			.u64("errors", d.errors)
			.u64("total_ns", d.total_ns, PI_FMT_DURATION_NS)
			.u64("avg_ns", d.avg_ns(), PI_FMT_DURATION_NS)
			.u64("max_ns", d.max_ns, PI_FMT_DURATION_NS)
			.u64("min_ns", d.min_ns, PI_FMT_DURATION_NS)
			.u64v("hist_ns", std::vector<uint64_t>(d.hist.begin(), d.hist.end()), PI_FMT_LOG2_HIST);
	}

	config cfg_;
	int ncpu_ = 0;
	syscall_bpf *skel_ = nullptr;
	bpf_link *iter_link_ = nullptr;
	sdk::links links_;
	names names_;
	bool measured_ = false;
	bool by_thread_ = false;
	bool rows_ = true;                   // per-target rows (sc_target) kept
	std::string system_rows_ = "target"; // cfg_.system_rows, "auto" resolved
	bool sequence_ = false;
	sdk::record seq_{"syscall", "sequence"};
	std::vector<std::string_view> seq_names_; // into names_, which lives as long as the probe
	std::vector<uint64_t> seq_nrs_, seq_lats_, seq_rets_, seq_errs_;
	uint32_t run_ = 0;
	uint64_t epoch_ = 0;
	uint64_t last_tick_ns_ = 0;
	uint64_t start_ns_ = 0; // boot ns when the activation began: the window of `total` rows
	std::set<uint32_t> sys_slots_; // syscalls with system rows in this activation
	std::set<uint32_t> sys_waiting_; // the target's syscalls whose system row has no call yet
	std::unordered_map<uint64_t, figures> prev_target_; // (id << 32 | slot) -> last cumulative
	std::vector<sc_stats> end_stats_;                   // on_end's per-CPU figures of one key
	bool lookup_and_delete_ = true;                     // until the kernel refuses it for a hash
	std::unordered_map<uint32_t, figures> prev_sys_;
	std::unordered_map<uint32_t, owner> owners_;
	std::set<uint32_t> end_slots_; // slots reported by ids that ended since the last report
};

} // namespace procimage::syscalls

PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA(procimage::syscalls::syscall_probe, "syscall", PROCIMAGE_VERSION,
		       "system calls: sequences, per-syscall counts, errors and latency, beside the whole system",
		       PROCIMAGE_RECORD_SCHEMA);
