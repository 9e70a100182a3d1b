// SPDX-License-Identifier: Apache-2.0
//
// profile probe, user side: one software cpu-clock perf event per CPU runs profile.bpf.c, which
// counts the target's samples per thread and stack; every interval the counts are read,
// symbolized (symbolize.hpp) and emitted as one `stack` record per thread and stack.
#include "profile.h"
#include "profile.skel.h"
#include "symbolize.hpp"

#include <procimage/bpf.hpp>
#include <procimage/config.hpp>
#include <procimage/sdk.hpp>
#include <probe_profile_record_schema.h>

#include <algorithm>
#include <cstddef>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace procimage::profile {

namespace sdk = procimage::sdk;
namespace sym = procimage::symbolize;

static_assert(sizeof(pr_key) % 8 == 0, "pr_key must have no tail padding");
static_assert(sizeof(pr_count) % 8 == 0, "pr_count must have no tail padding");

struct config {
	uint32_t freq = 99;
	uint32_t max_stacks = 4096;
	bool kernel = true;
	bool user = true;

	explicit config(const std::string &text)
	{
		sdk::config_reader r(text);
		freq = static_cast<uint32_t>(r.get_int("freq", 99, 1, 10000));
		max_stacks = static_cast<uint32_t>(r.get_int("max_stacks", 4096, 64, 1 << 20));
		kernel = r.get_bool("kernel_stacks", true);
		user = r.get_bool("user_stacks", true);
		r.finish();
	}
};

class profile_probe final : public sdk::probe {
public:
	static void validate(const std::string &text) { config c(text); }

	profile_probe(const pi_host &host, const std::string &text) : sdk::probe(host), cfg_(text) {}

	~profile_probe() override
	{
		links_.clear();
		profile_bpf__destroy(skel_);
	}

	void load(pi_probe_io &io) override
	{
		sdk::require_kernel_for("profile");
		ncpus_ = libbpf_num_possible_cpus();
		if (ncpus_ <= 0)
			throw std::runtime_error("cannot count the possible CPUs: " + sdk::errno_text(ncpus_));
		skel_ = profile_bpf__open();
		if (!skel_)
			throw std::runtime_error("cannot open the profile BPF object: " + sdk::errno_text(errno));
		sdk::set_common_rodata(skel_->rodata, host(), 256 * 1024);
		skel_->rodata->pr_user_on = cfg_.user;
		skel_->rodata->pr_kernel_on = cfg_.kernel;
		// Before 5.11 a hash key is at most 512 bytes: fewer frames per stack fit in it.
		depth_ = sdk::kernel_has(sdk::KF_LARGE_HASH_KEYS) ? PR_MAX_DEPTH : PR_SMALL_DEPTH;
		if (depth_ < PR_MAX_DEPTH)
			sdk::log(host(), PI_LOG_INFO,
				 "profile: stacks cut at " + std::to_string(depth_) + " frames each (" +
					 sdk::KF_LARGE_HASH_KEYS.what + ": Linux " + sdk::KF_LARGE_HASH_KEYS.since + ")");
		skel_->rodata->pr_depth = depth_;
		sdk::reuse_shared_maps(skel_->obj, host());
		for (bpf_map *m : {skel_->maps.pr_counts0, skel_->maps.pr_counts1}) {
			bpf_map__set_max_entries(m, cfg_.max_stacks);
			bpf_map__set_key_size(m, static_cast<uint32_t>(pr_key_size(depth_)));
		}
		int err = profile_bpf__load(skel_);
		if (err)
			throw std::runtime_error("cannot load the profile BPF object: " + sdk::errno_text(err));
		if (cfg_.kernel && !syms_.load_kernel())
			sdk::log(host(), PI_LOG_WARN,
				 "profile: /proc/kallsyms shows no addresses (kernel.kptr_restrict?): kernel frames stay "
				 "unresolved");
		io.n_ringbufs = 1;
		io.ringbuf_fds[0] = bpf_map__fd(skel_->maps.pr_events);
		io.lost_map_fd = sdk::lost_map_fd(skel_->obj);
		sdk::name_lost_causes(io, {{PR_LOST_COUNTS, "pr_counts: a sample found the per-interval stack counts full (raise profile.max_stacks)"}});
	}

	void attach(const pi_target &) override
	{
		links_.clear();
		// A new activation starts from nothing.
		sdk::clear_map(bpf_map__fd(skel_->maps.pr_counts0), sizeof(pr_key));
		sdk::clear_map(bpf_map__fd(skel_->maps.pr_counts1), sizeof(pr_key));
		sdk::clear_map(bpf_map__fd(skel_->maps.pr_seen), sizeof(uint32_t));
		window_start_ = sdk::boot_now_ns();
		attached_ = true;
		// One sampling event per CPU, all running the same program.
		perf_event_attr attr{};
		attr.size = sizeof(attr);
		attr.type = PERF_TYPE_SOFTWARE;
		attr.config = PERF_COUNT_SW_CPU_CLOCK;
		attr.freq = 1;
		attr.sample_freq = cfg_.freq;
		int opened = 0;
		for (int cpu = 0; cpu < ncpus_; cpu++) {
			int fd = static_cast<int>(syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
			if (fd < 0) {
				if (errno == ENODEV)
					continue; // a possible CPU that is not online
				int e = errno;
				links_.clear();
				throw std::runtime_error("cannot open a cpu-clock perf event on CPU " + std::to_string(cpu) +
							 ": " + sdk::errno_text(e) +
							 (e == EACCES || e == EPERM ? " (needs CAP_PERFMON or root)" : ""));
			}
			bpf_link *l = bpf_program__attach_perf_event(skel_->progs.pr_sample, fd);
			if (!l) {
				int e = errno;
				close(fd);
				links_.clear();
				throw std::runtime_error("cannot attach pr_sample to the perf event of CPU " +
							 std::to_string(cpu) + ": " + sdk::errno_text(e));
			}
			links_.add(l); // the link closes the event's fd
			opened++;
		}
		if (!opened)
			throw std::runtime_error("no online CPU to sample");
	}

	void detach() override { links_.clear(); }

	void on_data(uint32_t, const void *data, size_t len) override
	{
		if (len < sizeof(pi_event_header))
			throw std::runtime_error("short record (" + std::to_string(len) + " bytes)");
		const auto *h = static_cast<const pi_event_header *>(data);
		if (h->kind != PR_PROCESS)
			throw std::runtime_error("unknown record kind " + std::to_string(h->kind));
		if (len < sizeof(pr_process))
			throw std::runtime_error("short process record (" + std::to_string(len) + " bytes)");
		const auto *p = static_cast<const pr_process *>(data);
		// read its mappings while it lives: its stacks are written at the next tick
		if (cfg_.user && !syms_.known(h->pid, h->pid_start_ns, p->exec_id))
			syms_.capture(h->pid, h->pid_start_ns, p->exec_id);
	}

	void on_tick(uint64_t now_boot_ns, bool) override
	{
		if (!attached_)
			return;
		// Samples go to the other map from now on; read and empty the one they went to.
		uint32_t old = __atomic_load_n(&skel_->bss->pr_sel, __ATOMIC_ACQUIRE) & 1;
		__atomic_store_n(&skel_->bss->pr_sel, old ^ 1, __ATOMIC_RELEASE);
		int fd = bpf_map__fd(old ? skel_->maps.pr_counts1 : skel_->maps.pr_counts0);
		std::vector<std::pair<pr_key, pr_count>> entries;
		read_and_clear(fd, entries);
		uint64_t window = now_boot_ns - std::min(now_boot_ns, window_start_);
		window_start_ = now_boot_ns;
		if (links_.empty() && entries.empty())
			attached_ = false; // detached and drained: nothing more until the next attach
		// heaviest first within each process
		std::sort(entries.begin(), entries.end(), [](const auto &a, const auto &b) {
			if (a.first.pid != b.first.pid)
				return a.first.pid < b.first.pid;
			return a.second.samples > b.second.samples;
		});
		for (const auto &[k, v] : entries)
			emit(k, v, now_boot_ns, window);
		syms_.trim(4096);
	}

private:
	// Keys are pr_key_size(depth_) bytes: the rest of each pr_key stays zero.
	static void read_and_clear(int fd, std::vector<std::pair<pr_key, pr_count>> &out)
	{
		pr_key key{}, next{};
		pr_key *prev = nullptr;
		while (bpf_map_get_next_key(fd, prev, &next) == 0) {
			pr_count c{};
			if (bpf_map_lookup_elem(fd, &next, &c) == 0)
				out.emplace_back(next, c);
			key = next;
			prev = &key;
		}
		for (const auto &e : out)
			bpf_map_delete_elem(fd, &e.first);
	}

	void emit(const pr_key &k, const pr_count &v, uint64_t now_boot_ns, uint64_t window)
	{
		sdk::record r("profile", "stack");
		r.ts(now_boot_ns + host().boot_to_epoch_ns)
			.ids(k.pid, k.tid)
			.pid_start(v.pid_start_ns)
			.comm(std::string(v.comm, strnlen(v.comm, sizeof v.comm)));
		r.str("scope", "thread")
			.str("window", "interval")
			.u64("interval_ns", window, PI_FMT_DURATION_NS)
			.u64("samples", v.samples);
		std::vector<std::string> ustack, kstack;
		const auto *frames = reinterpret_cast<const uint64_t *>(k.frames);
		if (cfg_.user && k.ustack_nr > 0 && k.pid)
			ustack = syms_.user_stack(k.pid, v.pid_start_ns, k.exec_id, frames,
						  std::min<size_t>(static_cast<size_t>(k.ustack_nr), depth_));
		if (cfg_.kernel && k.kstack_nr > 0)
			kstack = syms_.kernel_stack(frames + depth_, std::min<size_t>(static_cast<size_t>(k.kstack_nr), depth_));
		r.strv("ustack", ustack).strv("kstack", kstack);
		r.emit(host());
	}

	config cfg_;
	profile_bpf *skel_ = nullptr;
	sdk::links links_;
	sym::symbolizer syms_;
	int ncpus_ = 0;
	uint32_t depth_ = PR_MAX_DEPTH; // frames per stack in the key
	uint64_t window_start_ = 0;
	bool attached_ = false;
};

} // namespace procimage::profile

PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA(procimage::profile::profile_probe, "profile", PROCIMAGE_VERSION,
		       "on-CPU sampling of the target with user and kernel stacks (perf events)",
		       PROCIMAGE_RECORD_SCHEMA);
