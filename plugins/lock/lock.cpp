// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: the probe itself. Loads lock.bpf.c for this kernel (task storage or a
// hash, uprobe_multi or single uprobes, the new-process timer), attaches its hooks at each
// activation, and hands the records to the others:
//   config.hpp      its configuration keys
//   functions.hpp   the probed libc functions and the names in the records
//   symbols.*       where those functions are in a library (ELF symbol tables)
//   placement.*     where in a function its entry probe goes (Capstone)
//   procfs.*        what /proc says of a target process
//   uprobes.*       the uprobes' life in the target processes
//   aggregates.hpp  reading and combining the kernel's per-CPU aggregates
//   records.*       the streamed and periodic records
#include "lock.h"
#include "lock.skel.h"
#include "aggregates.hpp"
#include "config.hpp"
#include "procfs.hpp"
#include "records.hpp"
#include "uprobes.hpp"

#include <procimage/bpf.hpp>
#include <procimage/config.hpp>
#include <procimage/sdk.hpp>
#include <probe_lock_record_schema.h>

#include <algorithm>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace procimage::lock {

namespace sdk = procimage::sdk;

class lock_probe final : public sdk::probe {
public:
	static void validate(const std::string &text) { config c(text); }

	lock_probe(const pi_host &host, const std::string &text) : sdk::probe(host), cfg_(text), reporter_(host, cfg_) {}

	~lock_probe() override
	{
		detach_all();
		lock_bpf__destroy(skel_);
	}

	void load(pi_probe_io &io) override
	{
		sdk::require_kernel_for("lock");
		skel_ = lock_bpf__open();
		if (!skel_)
			throw std::runtime_error("cannot open the lock BPF object: " + sdk::errno_text(errno));
		sdk::set_common_rodata(skel_->rodata, host(), cfg_.ringbuf_kb * 1024ULL);
		skel_->rodata->lk_acq_events = cfg_.acquisitions;
		skel_->rodata->lk_system_on = cfg_.system;
		skel_->rodata->lk_contention_min_ns = cfg_.contention_min_ns;
		skel_->rodata->lk_attach_after_ns = cfg_.attach_after_ns;
		sdk::reuse_shared_maps(skel_->obj, host());
		bpf_map__set_max_entries(skel_->maps.lk_events, cfg_.ringbuf_kb * 1024);
		bpf_map__set_max_entries(skel_->maps.lk_locks, cfg_.max_locks);
		bpf_map__set_max_entries(skel_->maps.lk_threads, cfg_.max_threads);
		bpf_map__set_max_entries(skel_->maps.lk_futex, cfg_.max_futexes);
		// Before 5.11: per-thread state in a hash keyed by thread id (see lock.bpf.c).
		task_hash_ = !sdk::task_storage_or_hash(skel_->maps.lk_task, std::max<uint32_t>(cfg_.max_threads, 4096));
		skel_->rodata->lk_task_storage = !task_hash_;
		bpf_program__set_autoload(skel_->progs.lk_thread_exit, task_hash_);
		// The uprobe programs tell their places apart by attach cookie (bpf_get_attach_cookie,
		// 5.15): without it, contention-only.
		bool cookies = sdk::kernel_has(sdk::KF_ATTACH_COOKIE);
		if (!cookies && cfg_.mode == "full")
			throw std::runtime_error(std::string("mode \"full\" needs ") + sdk::KF_ATTACH_COOKIE.what + " (Linux " +
						 sdk::KF_ATTACH_COOKIE.since + " and later); this kernel, " +
						 sdk::kernel_release() + ", lacks it: use mode \"contention\"");
		bool uprobes = cfg_.mode != "contention" && cookies;
		uprobes_loaded_ = uprobes;
		for (bpf_program *p : {skel_->progs.lk_entry, skel_->progs.lk_return, skel_->progs.lk_exec, skel_->progs.lk_fork,
					 skel_->progs.lk_cgroup_attach})
			bpf_program__set_autoload(p, uprobes);
		// new processes wait in lk_young (a bpf_timer each) before they are announced
		bool young = uprobes && cfg_.attach_after_ns;
		bpf_program__set_autoload(skel_->progs.lk_proc_exit, young);
		bpf_map__set_autocreate(skel_->maps.lk_young, young);
		multi_ = uprobes && (cfg_.uprobe_attach == "multi" || (cfg_.uprobe_attach == "auto" && sdk::kernel_has(sdk::KF_UPROBE_MULTI)));
		if (multi_) {
			bpf_program__set_expected_attach_type(skel_->progs.lk_entry, static_cast<bpf_attach_type>(BPF_TRACE_UPROBE_MULTI_));
			bpf_program__set_expected_attach_type(skel_->progs.lk_return, static_cast<bpf_attach_type>(BPF_TRACE_UPROBE_MULTI_));
		}
		int err = lock_bpf__load(skel_);
		if (err)
			throw std::runtime_error("cannot load the lock BPF object: " + sdk::errno_text(err));
		if (uprobes)
			uprobes_ = std::make_unique<process_uprobes>(host(), cfg_, skel_->progs.lk_entry, skel_->progs.lk_return, multi_);
		io.n_ringbufs = 1;
		io.ringbuf_fds[0] = bpf_map__fd(skel_->maps.lk_events);
		io.lost_map_fd = sdk::lost_map_fd(skel_->obj);
		sdk::name_lost_causes(io, {{LK_LOST_LOCKS, "lk_locks: a lock's figures found the map full (raise lock.max_locks)"},
					   {LK_LOST_THREADS, "lk_threads: a thread's figures found the map full (raise lock.max_threads)"},
					   {LK_LOST_OWNERS, "lk_owner: a lock's owner was not recorded: 16384 locks are held at once"},
					   {LK_LOST_HOLDS, "lk_holds: a hold was not timed: 16384 are open at once"},
					   {LK_LOST_WAKERS, "lk_wakers: a waker was not recorded: 16384 wakes are pending at once"},
					   {LK_LOST_FUTEXES, "lk_futex: a futex's figures found the map full (raise lock.max_futexes)"}});
	}

	void attach(const pi_target &target) override
	{
		detach_all();
		reset();
		// A cgroup target takes in every process created in it or moved into it.
		bool cgroup = target.kind == PI_TARGET_CGROUP;
		if (cgroup && (target.size < offsetof(pi_target, cgroup_path) + sizeof target.cgroup_path ||
			       !target.cgroup_path))
			throw std::runtime_error("lock: a cgroup target without its cgroup's directory");
		follow_ = target.follow != 0 || cgroup;
		if (target.kind == PI_TARGET_ALL) {
			if (cfg_.mode == "full")
				throw std::runtime_error(
					"lock: mode \"full\" needs a target process (-p TID, -P TGID or -- CMD): its uprobes "
					"are attached to the target processes' libc only, never system-wide; use mode "
					"\"auto\" or \"contention\" for the whole system");
			full_ = false;
			if (cfg_.mode == "auto")
				sdk::log(host(), PI_LOG_WARN,
					 "lock: the target is the whole system: contention-only mode (futex waits and "
					 "wakes, no hold times). Give -P TGID, -p TID or -- CMD for lock hold and wait "
					 "times: uprobes are attached to target processes only");
		} else {
			full_ = cfg_.mode != "contention" && uprobes_loaded_;
			if (cfg_.mode == "auto" && !uprobes_loaded_)
				sdk::log(host(), PI_LOG_WARN,
					 "lock: contention-only mode: this kernel lacks " + std::string(sdk::KF_ATTACH_COOKIE.what) +
						 " (Linux " + sdk::KF_ATTACH_COOKIE.since + "), which the uprobes need");
		}
		skel_->bss->lk_full = full_ ? 1 : 0;
		skel_->bss->lk_epoch_ns = sdk::boot_now_ns();
		reporter_.start({bpf_map__fd(skel_->maps.lk_locks), bpf_map__fd(skel_->maps.lk_threads),
				 bpf_map__fd(skel_->maps.lk_futex), bpf_map__fd(skel_->maps.lk_system)},
				full_, skel_->bss->lk_epoch_ns);

		if (task_hash_)
			links_.attach(skel_->progs.lk_thread_exit);
		links_.attach(skel_->progs.lk_futex_enter);
		links_.attach(skel_->progs.lk_futex_exit);
		if (!full_)
			return;
		if (cfg_.attach_after_ns)
			links_.attach(skel_->progs.lk_proc_exit);
		links_.attach(skel_->progs.lk_exec);
		if (follow_)
			links_.attach(skel_->progs.lk_fork);
		if (cgroup)
			links_.attach(skel_->progs.lk_cgroup_attach);

		std::set<uint32_t> pids;
		if (cgroup) {
			// Attached before the list is read: a process that moves in meanwhile is announced
			// by lk_cgroup_attach, or listed here, or both (attach_process takes it once).
			auto in = cgroup_processes(target.cgroup_path);
			if (!in)
				throw std::runtime_error("lock: cannot list the processes of cgroup " +
							 std::string(target.cgroup_path) + ": " + sdk::errno_text(errno));
			pids.insert(in->begin(), in->end());
			pids.erase(host().self_tgid);
		}
		for (uint32_t i = 0; i < target.n_ids; i++) {
			uint32_t id = target.ids[i];
			if (id == 0)
				continue; // an idle task has no user space
			uint32_t pid = target.kind == PI_TARGET_TID ? tgid_of(id) : id;
			if (!pid)
				throw std::runtime_error("lock: thread " + std::to_string(id) + ": no such thread");
			pids.insert(pid);
		}
		std::string problems;
		size_t attached = 0;
		for (uint32_t pid : pids) {
			std::string why = uprobes_->attach_process(pid);
			if (why.empty())
				attached++;
			else
				problems += (problems.empty() ? "" : "; ") + why;
		}
		// (a cgroup may hold processes without libc, or none yet: never a refusal)
		if (!cgroup && !pids.empty() && attached == 0)
			throw std::runtime_error(problems);
		if (!problems.empty())
			sdk::log(host(), PI_LOG_WARN, problems);
	}

	void detach() override { detach_all(); }

	void on_data(uint32_t, const void *data, size_t len) override
	{
		if (len < sizeof(pi_event_header))
			throw std::runtime_error("short record (" + std::to_string(len) + " bytes)");
		const auto *h = static_cast<const pi_event_header *>(data);
		switch (h->kind) {
		case LK_ACQ: return reporter_.acquisition(*need<lk_acq>(data, len));
		case LK_CONTENTION: return reporter_.contention(*need<lk_contention>(data, len));
		case LK_NEWPROC: return on_newproc(*need<lk_newproc>(data, len));
		default: throw std::runtime_error("unknown record kind " + std::to_string(h->kind));
		}
	}

	void on_tick(uint64_t now_boot_ns, bool final) override
	{
		if (!skel_ || !skel_->obj || bpf_map__fd(skel_->maps.lk_locks) < 0)
			return;
		if (!final && uprobes_) {
			uprobes_->forget_ended();
			uprobes_->retry_pending();
		}
		reporter_.tick(now_boot_ns, final);
	}

private:
	template <typename T> static const T *need(const void *data, size_t len)
	{
		if (len < sizeof(T))
			throw std::runtime_error("short record (" + std::to_string(len) + " bytes)");
		return static_cast<const T *>(data);
	}

	// A new process of the target (forked, or exec'd) has lived attach_after_ms.
	void on_newproc(const lk_newproc &e)
	{
		if (e.h.pid == e.pid) // (an immediate fork notice names the parent: the child is read at its first lookup)
			reporter_.new_image(e.pid, e.h.pid_start_ns);
		if (!full_ || !uprobes_)
			return;
		if (e.why == LK_NEW_FORK && !follow_)
			return;
		uprobes_->on_newproc(e);
	}

	void detach_all()
	{
		links_.clear();
		// processes still waiting for their uprobes: deleting them stops their timers
		if (skel_ && cfg_.attach_after_ns && uprobes_loaded_)
			clear_map<uint32_t>(bpf_map__fd(skel_->maps.lk_young));
		if (uprobes_)
			uprobes_->detach_all();
	}

	// A new measurement: nothing of an earlier activation is kept in the kernel's maps.
	void reset()
	{
		clear_map<lk_lock_key>(bpf_map__fd(skel_->maps.lk_locks));
		clear_map<uint32_t>(bpf_map__fd(skel_->maps.lk_threads));
		clear_map<lk_futex_key>(bpf_map__fd(skel_->maps.lk_futex));
		clear_map<lk_hold_key>(bpf_map__fd(skel_->maps.lk_holds));
		clear_map<lk_futex_key>(bpf_map__fd(skel_->maps.lk_owner));
		clear_map<lk_futex_key>(bpf_map__fd(skel_->maps.lk_wakers));
		int ncpu = libbpf_num_possible_cpus();
		std::vector<lk_sys_stats> zero(static_cast<size_t>(std::max(ncpu, 1)));
		for (uint32_t k = 0; k < 2; k++)
			bpf_map_update_elem(bpf_map__fd(skel_->maps.lk_system), &k, zero.data(), BPF_ANY);
	}

	config cfg_;
	lock_bpf *skel_ = nullptr;
	sdk::links links_;
	reporter reporter_;
	std::unique_ptr<process_uprobes> uprobes_; // with the uprobe programs loaded
	bool full_ = false;
	bool uprobes_loaded_ = false; // the uprobe programs are loaded (not mode contention, and the kernel has cookies)
	bool follow_ = false;
	bool task_hash_ = false; // lk_task is a hash keyed by thread id (no task storage before 5.11)
	bool multi_ = false; // uprobe_multi links (Linux 6.6+), else one perf-event uprobe per place
};

} // namespace procimage::lock

PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA(procimage::lock::lock_probe, "lock", PROCIMAGE_VERSION,
		       "user-space locks: mutex/rwlock/spinlock wait and hold times, futex contention and holders",
		       PROCIMAGE_RECORD_SCHEMA);
