// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: finds the target processes' libc, attaches lock.bpf.c's uprobes to
// them only, decodes the streamed records and turns the kernel's per-lock, per-thread and
// per-futex aggregates into periodic records.
#include "lock.h"
#include "lock.skel.h"
#include "placement.hpp"
#include "target.hpp"

#include <procimage/bpf.hpp>
#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <bpf/btf.h>
#include <gelf.h>
#include <sys/syscall.h>
#include <libelf.h>

#include <algorithm>
#include <cinttypes>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <time.h>
#include <unistd.h>
#include <unordered_map>

namespace procimage::lock {

namespace sdk = procimage::sdk;

// How long a new process of the target lives before it gets its uprobes (README: *New
// processes*).
constexpr int64_t ATTACH_AFTER_MS = 10;

struct config {
	std::string mode = "auto";
	bool acquisitions = false;
	uint64_t contention_min_ns = 1000000;
	bool system = true;
	uint32_t top = 10;
	uint32_t max_locks = 4096;
	uint32_t max_threads = 4096;
	uint32_t max_futexes = 8192;
	uint32_t ringbuf_kb = 1024;
	std::string uprobe_attach = "auto";
	bool lock_return = false;
	std::string uprobe_place = "auto";
	uint64_t attach_after_ns = 0;

	explicit config(const std::string &text)
	{
		sdk::config_reader r(text);
		mode = r.get_enum("mode", "auto", {"auto", "full", "contention"});
		acquisitions = r.get_bool("acquisitions", false);
		contention_min_ns = static_cast<uint64_t>(r.get_int("contention_min_us", 1000, 0, 60000000)) * 1000;
		system = r.get_bool("system", true);
		top = static_cast<uint32_t>(r.get_int("top", 10, 0, 100000));
		max_locks = static_cast<uint32_t>(r.get_int("max_locks", 4096, 16, 1 << 20));
		max_threads = static_cast<uint32_t>(r.get_int("max_threads", 4096, 16, 1 << 20));
		max_futexes = static_cast<uint32_t>(r.get_int("max_futexes", 8192, 16, 1 << 20));
		ringbuf_kb = static_cast<uint32_t>(r.get_int("ringbuf_kb", 1024, 64, 1 << 20));
		uprobe_attach = r.get_enum("uprobe_attach", "auto", {"auto", "multi", "single"});
		lock_return = r.get_bool("lock_return", false);
		uprobe_place = r.get_enum("uprobe_place", "auto", {"auto", "entry"});
		attach_after_ns = static_cast<uint64_t>(r.get_int("attach_after_ms", ATTACH_AFTER_MS, 0, 60000)) * 1000000;
		if (ringbuf_kb & (ringbuf_kb - 1))
			throw sdk::config_error("ringbuf_kb: expected a power of two, got " + std::to_string(ringbuf_kb));
		if (acquisitions && mode == "contention")
			throw sdk::config_error("acquisitions: needs hold tracking (uprobes); mode \"contention\" has none");
		if (lock_return && mode == "contention")
			throw sdk::config_error("lock_return: return probes are uprobes; mode \"contention\" has none");
		r.finish();
	}
};

// ------------------------------------------------------------------ names

struct func_def {
	const char *name;
	uint32_t op;
	// BLOCKING: a lock function that returns only once it has the lock; without lock_return
	// it gets no return probe (LK_CK_LOCK_NORET)
	enum { LOCK, BLOCKING, COND, UNLOCK } role;
};

const func_def FUNCS[] = {
	{"pthread_mutex_lock", LK_OP_MUTEX_LOCK, func_def::BLOCKING},
	{"pthread_mutex_trylock", LK_OP_MUTEX_TRYLOCK, func_def::LOCK},
	{"pthread_mutex_timedlock", LK_OP_MUTEX_TIMEDLOCK, func_def::LOCK},
	{"pthread_mutex_clocklock", LK_OP_MUTEX_CLOCKLOCK, func_def::LOCK},
	{"pthread_rwlock_rdlock", LK_OP_RW_RDLOCK, func_def::BLOCKING},
	{"pthread_rwlock_tryrdlock", LK_OP_RW_TRYRDLOCK, func_def::LOCK},
	{"pthread_rwlock_timedrdlock", LK_OP_RW_TIMEDRDLOCK, func_def::LOCK},
	{"pthread_rwlock_clockrdlock", LK_OP_RW_CLOCKRDLOCK, func_def::LOCK},
	{"pthread_rwlock_wrlock", LK_OP_RW_WRLOCK, func_def::BLOCKING},
	{"pthread_rwlock_trywrlock", LK_OP_RW_TRYWRLOCK, func_def::LOCK},
	{"pthread_rwlock_timedwrlock", LK_OP_RW_TIMEDWRLOCK, func_def::LOCK},
	{"pthread_rwlock_clockwrlock", LK_OP_RW_CLOCKWRLOCK, func_def::LOCK},
	{"pthread_spin_lock", LK_OP_SPIN_LOCK, func_def::LOCK},
	{"pthread_spin_trylock", LK_OP_SPIN_TRYLOCK, func_def::LOCK},
	{"pthread_cond_wait", LK_OP_COND_WAIT, func_def::COND},
	{"pthread_cond_timedwait", LK_OP_COND_TIMEDWAIT, func_def::COND},
	{"pthread_cond_clockwait", LK_OP_COND_CLOCKWAIT, func_def::COND},
	{"pthread_mutex_unlock", LK_OP_MUTEX_UNLOCK, func_def::UNLOCK},
	{"pthread_rwlock_unlock", LK_OP_RW_UNLOCK, func_def::UNLOCK},
	{"pthread_spin_unlock", LK_OP_SPIN_UNLOCK, func_def::UNLOCK},
};

const char *op_name(uint32_t op)
{
	for (const auto &f : FUNCS)
		if (f.op == op)
			return f.name;
	return "unknown";
}

const char *type_name(uint32_t t)
{
	switch (t) {
	case LK_TYPE_MUTEX: return "mutex";
	case LK_TYPE_RWLOCK_READ: return "rwlock_read";
	case LK_TYPE_RWLOCK_WRITE: return "rwlock_write";
	case LK_TYPE_SPIN: return "spin";
	default: return "unknown";
	}
}

const char *futex_cmd_name(uint32_t c)
{
	switch (c) {
	case 0: return "FUTEX_WAIT";
	case 1: return "FUTEX_WAKE";
	case 3: return "FUTEX_REQUEUE";
	case 4: return "FUTEX_CMP_REQUEUE";
	case 5: return "FUTEX_WAKE_OP";
	case 6: return "FUTEX_LOCK_PI";
	case 7: return "FUTEX_UNLOCK_PI";
	case 9: return "FUTEX_WAIT_BITSET";
	case 10: return "FUTEX_WAKE_BITSET";
	case 11: return "FUTEX_WAIT_REQUEUE_PI";
	case 13: return "FUTEX_LOCK_PI2";
	default: return "FUTEX_OTHER";
	}
}

// ELF symbols, target processes' libraries and /proc: target.hpp


// ------------------------------------------------------------------ per-CPU map reading

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

void add_lock(lk_lock_stats &a, const lk_lock_stats &b)
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

void add_thread(lk_thread_stats &a, const lk_thread_stats &b)
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

void add_futex(lk_futex_stats &a, const lk_futex_stats &b)
{
	a.waits += b.waits;
	a.wait_total_ns += b.wait_total_ns;
	a.wait_max_ns = std::max(a.wait_max_ns, b.wait_max_ns);
	a.timeouts += b.timeouts;
	a.wakes += b.wakes;
	a.woken += b.woken;
	a.pid_start_ns = std::max(a.pid_start_ns, b.pid_start_ns);
}

void add_sys(lk_sys_stats &a, const lk_sys_stats &b)
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
void sub_lock(lk_lock_stats &a, const lk_lock_stats &b)
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

void sub_thread(lk_thread_stats &a, const lk_thread_stats &b)
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

void sub_futex(lk_futex_stats &a, const lk_futex_stats &b)
{
	a.waits -= b.waits;
	a.wait_total_ns -= b.wait_total_ns;
	a.timeouts -= b.timeouts;
	a.wakes -= b.wakes;
	a.woken -= b.woken;
}

void sub_sys(lk_sys_stats &a, const lk_sys_stats &b)
{
	a.waits -= b.waits;
	a.wait_total_ns -= b.wait_total_ns;
	a.wakes -= b.wakes;
	a.woken -= b.woken;
	for (int i = 0; i < LK_HIST_SLOTS; i++)
		a.wait_hist[i] -= b.wait_hist[i];
}

std::vector<uint64_t> hist(const __u64 *h)
{
	int last = LK_HIST_SLOTS - 1;
	while (last >= 0 && h[last] == 0)
		last--;
	return std::vector<uint64_t>(h, h + last + 1);
}

// ------------------------------------------------------------------ the probe

// Uprobe links to remove: bpf_link objects (perf-event uprobes) and link descriptors
// (uprobe_multi).
struct uprobes {
	std::vector<bpf_link *> links;
	std::vector<int> fds;
	bool empty() const { return links.empty() && fds.empty(); }
};

// Removing a uprobe waits for the kernel's grace periods (tens of ms each here): remove them
// from several threads at once so that their waits overlap.
void release(const uprobes &u)
{
	size_t n = u.links.size() + u.fds.size();
	auto one = [&u](size_t i) {
		if (i < u.links.size())
			bpf_link__destroy(u.links[i]);
		else
			close(u.fds[i - u.links.size()]);
	};
	if (n < 4) {
		for (size_t i = 0; i < n; i++)
			one(i);
		return;
	}
	size_t nthreads = std::min<size_t>(n, 32);
	std::vector<std::thread> threads;
	for (size_t t = 0; t < nthreads; t++)
		threads.emplace_back([&one, t, nthreads, n] {
			for (size_t i = t; i < n; i += nthreads)
				one(i);
		});
	for (auto &th : threads)
		th.join();
}

// Releases the uprobes of processes that ended on a thread of its own, so that the event loop
// goes on with its records and ticks while the kernel waits for its grace periods.
class link_reaper {
public:
	~link_reaper()
	{
		{
			std::lock_guard<std::mutex> g(m_);
			stop_ = true;
		}
		cv_.notify_all();
		if (worker_.joinable())
			worker_.join();
	}

	void add(std::vector<bpf_link *> links, std::vector<int> fds)
	{
		if (links.empty() && fds.empty())
			return;
		{
			std::lock_guard<std::mutex> g(m_);
			queued_.links.insert(queued_.links.end(), links.begin(), links.end());
			queued_.fds.insert(queued_.fds.end(), fds.begin(), fds.end());
			if (!worker_.joinable())
				worker_ = std::thread([this] { run(); });
		}
		cv_.notify_all();
	}

	// until everything handed over so far is released
	void wait_idle()
	{
		std::unique_lock<std::mutex> g(m_);
		cv_.wait(g, [this] { return queued_.empty() && !busy_; });
	}

private:
	void run()
	{
		std::unique_lock<std::mutex> g(m_);
		for (;;) {
			cv_.wait(g, [this] { return stop_ || !queued_.empty(); });
			if (queued_.empty())
				return; // stopping, nothing left
			uprobes batch = std::move(queued_);
			queued_ = {};
			busy_ = true;
			g.unlock();
			release(batch);
			g.lock();
			busy_ = false;
			cv_.notify_all();
		}
	}

	std::mutex m_;
	std::condition_variable cv_;
	uprobes queued_;
	bool busy_ = false, stop_ = false;
	std::thread worker_;
};

class lock_probe final : public sdk::probe {
public:
	static void validate(const std::string &text) { config c(text); }

	lock_probe(const pi_host &host, const std::string &text) : sdk::probe(host), cfg_(text) {}

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
		for (bpf_program *p : {skel_->progs.lk_entry, skel_->progs.lk_return, skel_->progs.lk_exec, skel_->progs.lk_fork})
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
		follow_ = target.follow != 0;
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
		activated_ns_ = prev_tick_ns_ = tick_ns_ = skel_->bss->lk_epoch_ns;

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

		std::set<uint32_t> pids;
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
			std::string why = attach_process(pid);
			if (why.empty())
				attached++;
			else
				problems += (problems.empty() ? "" : "; ") + why;
		}
		if (!pids.empty() && attached == 0)
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
		case LK_ACQ: return on_acq(*need<lk_acq>(data, len));
		case LK_CONTENTION: return on_contention(*need<lk_contention>(data, len));
		case LK_NEWPROC: return on_newproc(*need<lk_newproc>(data, len));
		default: throw std::runtime_error("unknown record kind " + std::to_string(h->kind));
		}
	}

	void on_tick(uint64_t now_boot_ns, bool final) override
	{
		if (!skel_ || !skel_->obj || bpf_map__fd(skel_->maps.lk_locks) < 0)
			return;
		if (!final) {
			forget_ended();
			retry_pending();
		}
		uint64_t ts = now_boot_ns + host().boot_to_epoch_ns;
		tick_ns_ = std::max(now_boot_ns, prev_tick_ns_);
		report_threads(ts, final);
		report_locks(ts, final);
		report_futexes(ts, final);
		report_system(ts, final);
		prev_tick_ns_ = tick_ns_;
	}

private:
	template <typename T> static const T *need(const void *data, size_t len)
	{
		if (len < sizeof(T))
			throw std::runtime_error("short record (" + std::to_string(len) + " bytes)");
		return static_cast<const T *>(data);
	}

	static std::string cstr(const char *s, size_t max) { return std::string(s, strnlen(s, max)); }

	// ---------------------------------------------------------------- uprobes per process

	struct proc_state {
		std::vector<bpf_link *> links; // one uprobe each (uprobe_attach "single")
		std::vector<int> fds;          // uprobe_multi links
		std::set<std::pair<uint64_t, uint64_t>> files; // (dev, inode) probed
		bool pending = false;                          // no libc seen yet: look again
		int retries = 0;
		uint64_t start = 0; // start time (read_proc_stat) at the first attach
	};

	// The places to probe in one file: (offset, cookie) for entries and for returns.
	struct places {
		std::vector<uint64_t> entry_off, entry_ck, ret_off, ret_ck;
	};
	using file_id = std::pair<uint64_t, uint64_t>; // (dev, inode)
	using probe_plan = std::map<file_id, places>;

	// Where the functions are in a process's libraries and where each probe goes: symbol
	// tables read, instructions decoded. It depends on the files alone (and the
	// configuration), so it is worked out once per set of files and activation and reused for
	// every process that maps them (each fork of a busy target would otherwise pay for it).
	// nullptr, with `why` set, when the files lack the mutex functions.
	const probe_plan *plan_for(uint32_t pid, const std::vector<mapped_lib> &libs, std::string &why)
	{
		std::vector<file_id> key;
		for (const auto &l : libs)
			key.push_back({l.dev, l.ino});
		if (auto it = plans_.find(key); it != plans_.end())
			return &it->second;
		std::set<std::string> wanted;
		for (const auto &f : FUNCS)
			wanted.insert(f.name);
		std::map<std::string, std::pair<const mapped_lib *, uint64_t>> where;
		std::map<const mapped_lib *, elf_extra> extras;
		for (const auto &l : libs) {
			std::map<std::string, uint64_t> offsets;
			try {
				offsets = elf_function_offsets(l.open_path, wanted, &extras[&l]);
			} catch (const std::exception &e) {
				sdk::log(host(), PI_LOG_WARN, "lock: process " + std::to_string(pid) + ": " + e.what());
				continue;
			}
			for (const auto &[name, off] : offsets)
				if (!where.count(name))
					where[name] = {&l, off};
		}
		if (!where.count("pthread_mutex_lock") || !where.count("pthread_mutex_unlock")) {
			why = "lock: process " + std::to_string(pid) + " (" + proc_comm(pid) +
			      "): no pthread_mutex_lock/unlock in " + libs[0].path;
			return nullptr;
		}
		probe_plan plan;
		for (const auto &f : FUNCS) {
			auto it = where.find(f.name);
			if (it == where.end())
				continue; // e.g. the clock* variants before glibc 2.30
			const mapped_lib &l = *it->second.first;
			uint64_t off = it->second.second;
			auto &p = plan[{l.dev, l.ino}];
			// an entry probe without a return probe may sit further in, where it is cheaper
			auto moved = [&]() -> uint64_t {
				const elf_extra &x = extras[&l];
				if (cfg_.uprobe_place == "entry" || !x.x86_64)
					return off;
				auto sz = x.sizes.find(f.name);
				uint64_t at = cheap_place(l.open_path, off, sz == x.sizes.end() ? 0 : sz->second);
				if (at)
					sdk::log(host(), PI_LOG_DEBUG,
						 "lock: " + std::string(f.name) + " probed at +" + std::to_string(at) + " in " + l.path);
				return off + at;
			};
			auto entry = [&](uint64_t at, uint32_t kind) {
				p.entry_off.push_back(at);
				p.entry_ck.push_back(LK_COOKIE(kind, f.op));
			};
			auto ret = [&]() {
				p.ret_off.push_back(off);
				p.ret_ck.push_back(LK_COOKIE(LK_CK_LOCK, f.op));
			};
			if (f.op == LK_OP_SPIN_LOCK && spin_lock_layout(l.open_path, off)) {
				entry(off + 3, LK_CK_SPIN_ATTEMPT);
				entry(off + 5, LK_CK_SPIN_ACQUIRED);
				continue;
			}
			if (first_insn_locked(l.open_path, off)) {
				sdk::log(host(), PI_LOG_WARN,
					 "lock: " + std::string(f.name) + " in " + l.path +
						 " starts with a locked instruction, which cannot carry a uprobe: not tracked");
				continue;
			}
			switch (f.role) {
			case func_def::BLOCKING:
				if (!cfg_.lock_return) {
					entry(moved(), LK_CK_LOCK_NORET);
					break;
				}
				entry(off, LK_CK_LOCK);
				ret();
				break;
			case func_def::LOCK: entry(off, LK_CK_LOCK); ret(); break;
			case func_def::COND: entry(off, LK_CK_COND); ret(); break;
			case func_def::UNLOCK: entry(moved(), LK_CK_UNLOCK); break;
			}
		}
		return &(plans_[key] = std::move(plan));
	}

	// Attach the uprobes to one process's libc; "" on success, else why not.
	std::string attach_process(uint32_t pid)
	{
		auto libs = process_libs(pid);
		if (!libs)
			return "lock: process " + std::to_string(pid) + ": no such process";
		auto &ps = procs_[pid];
		if (!ps.start)
			if (auto st = read_proc_stat(pid))
				ps.start = st->start_ticks;
		if (libs->empty()) {
			ps.pending = true;
			return "lock: process " + std::to_string(pid) + " (" + proc_comm(pid) +
			       ") has no shared libc or libpthread in /proc/" + std::to_string(pid) +
			       "/maps (statically linked?): its lock functions cannot be probed; mode "
			       "\"contention\" (futex waits and wakes) works for any program";
		}
		ps.pending = false;
		// old glibc: the pthread functions live in libpthread; libc's are forwarders
		std::stable_sort(libs->begin(), libs->end(),
				 [](const mapped_lib &a, const mapped_lib &b) { return a.pthread > b.pthread; });
		std::string why;
		const probe_plan *plan = plan_for(pid, *libs, why);
		if (!plan)
			return why;
		bool any_new = false;
		for (const auto &l : *libs)
			if (plan->count({l.dev, l.ino}) && !ps.files.count({l.dev, l.ino}))
				any_new = true;
		if (!any_new)
			return ""; // already probed (an exec into the same libc keeps its uprobes)
		for (const auto &l : *libs) {
			auto it = plan->find({l.dev, l.ino});
			if (it == plan->end() || ps.files.count(it->first))
				continue;
			const places &p = it->second;
			auto fail = [&](const char *what, int err) {
				return std::runtime_error("lock: cannot attach the " + std::string(what) + " uprobes in " + l.path +
							  " (process " + std::to_string(pid) + "): " + sdk::errno_text(err));
			};
			if (multi_) {
				int fd = attach_multi(skel_->progs.lk_entry, l.open_path, pid, p.entry_off, p.entry_ck, false);
				if (fd < 0)
					throw fail("entry", -fd);
				ps.fds.push_back(fd);
				if (!p.ret_off.empty()) {
					fd = attach_multi(skel_->progs.lk_return, l.open_path, pid, p.ret_off, p.ret_ck, true);
					if (fd < 0)
						throw fail("return", -fd);
					ps.fds.push_back(fd);
				}
			} else {
				auto single = [&](bpf_program *prog, uint64_t at, uint64_t ck, bool retprobe) {
					LIBBPF_OPTS(bpf_uprobe_opts, o, .bpf_cookie = ck, .retprobe = retprobe);
					bpf_link *link = bpf_program__attach_uprobe_opts(prog, static_cast<pid_t>(pid),
											 l.open_path.c_str(), at, &o);
					if (!link)
						throw fail(retprobe ? "return" : "entry", errno);
					ps.links.push_back(link);
				};
				for (size_t i = 0; i < p.entry_off.size(); i++)
					single(skel_->progs.lk_entry, p.entry_off[i], p.entry_ck[i], false);
				for (size_t i = 0; i < p.ret_off.size(); i++)
					single(skel_->progs.lk_return, p.ret_off[i], p.ret_ck[i], true);
			}
			ps.files.insert(it->first);
		}
		sdk::log(host(), PI_LOG_DEBUG,
			 "lock: " + std::to_string(ps.links.size() + ps.fds.size()) + " uprobe links in process " + std::to_string(pid) + " (" +
				 (*libs)[0].path + ")");
		return "";
	}

	void retry_pending()
	{
		std::vector<uint32_t> pids;
		for (const auto &[pid, ps] : procs_)
			if (ps.pending)
				pids.push_back(pid);
		for (uint32_t pid : pids) {
			std::string why;
			try {
				why = attach_process(pid);
			} catch (const std::exception &e) {
				if (!process_ended(pid))
					sdk::log(host(), PI_LOG_WARN, e.what());
				forget_process(pid);
				continue;
			}
			if (why.find("no such process") != std::string::npos) {
				forget_process(pid);
				continue;
			}
			auto &ps = procs_[pid];
			if (ps.pending && ++ps.retries == 3)
				sdk::log(host(), PI_LOG_WARN, why);
		}
	}

	// Release the uprobes of target processes that have ended: a target that forks many
	// short-lived children would otherwise keep two links (file descriptors) per child until
	// the end of the activation.
	void forget_ended()
	{
		std::vector<uint32_t> ended;
		for (const auto &[pid, ps] : procs_)
			if (process_ended(pid, ps.start))
				ended.push_back(pid);
		for (uint32_t pid : ended)
			forget_process(pid);
	}

	void on_newproc(const lk_newproc &e)
	{
		if (!full_)
			return;
		if (e.why == LK_NEW_FORK && !follow_)
			return;
		std::string why;
		try {
			why = attach_process(e.pid);
			// Just exec'd: the dynamic loader maps libc within a millisecond or so. Look again
			// for a little while now rather than at the next tick (up to interval_ms later,
			// when the program may long have locked and unlocked).
			for (int i = 0; i < 20 && e.why == LK_NEW_EXEC && pending(e.pid) && !process_ended(e.pid); i++) {
				std::this_thread::sleep_for(std::chrono::milliseconds(1));
				why = attach_process(e.pid);
			}
		} catch (const std::exception &) {
			// a short-lived child may be gone before its uprobes are in: not an error
			if (!process_ended(e.pid))
				throw;
			forget_process(e.pid);
			return;
		}
		if (!why.empty() && why.find("no such process") == std::string::npos && !pending(e.pid))
			sdk::log(host(), PI_LOG_WARN, why);
	}

	bool pending(uint32_t pid) const
	{
		auto it = procs_.find(pid);
		return it != procs_.end() && it->second.pending;
	}

	// A process that ended: its uprobes are released by the reaper, off the event loop.
	void forget_process(uint32_t pid)
	{
		auto it = procs_.find(pid);
		if (it == procs_.end())
			return;
		reaper_.add(std::move(it->second.links), std::move(it->second.fds));
		procs_.erase(it);
	}

	void detach_all()
	{
		links_.clear();
		// processes still waiting for their uprobes: deleting them stops their timers
		if (skel_ && cfg_.attach_after_ns && uprobes_loaded_)
			clear_map<uint32_t>(bpf_map__fd(skel_->maps.lk_young));
		for (auto &[pid, ps] : procs_)
			reaper_.add(std::move(ps.links), std::move(ps.fds));
		procs_.clear();
		plans_.clear();
		// every uprobe is out of every process when this returns
		reaper_.wait_idle();
	}

	// A new measurement: nothing of an earlier activation is kept.
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
		prev_locks_.clear();
		prev_threads_.clear();
		retired_locks_.clear();
		retired_threads_.clear();
		prev_futex_.clear();
		retired_futex_.clear();
		prev_sys_[0] = prev_sys_[1] = lk_sys_stats{};
	}

	// ---------------------------------------------------------------- streamed records

	void on_acq(const lk_acq &e)
	{
		sdk::record r("lock", "acquisition");
		r.header(e.h, host());
		r.u64("lock_addr", e.lock_addr, PI_FMT_HEX)
			.str("lock_type", type_name(e.type))
			.str("op", op_name(e.op))
			.i64("ret", -static_cast<int64_t>(e.ret), PI_FMT_ERRNO)
			.boolean("acquired", e.ret == 0 || e.ret == 130 /* EOWNERDEAD: acquired */)
			.u64("wait_ns", e.wait_ns, PI_FMT_DURATION_NS)
			.u64("hold_ns", e.hold_ns, PI_FMT_DURATION_NS)
			.u64("futex_wait_ns", e.futex_wait_ns, PI_FMT_DURATION_NS)
			.boolean("contended", e.contended != 0)
			.u64("depth", e.depth)
			.u64("request_ts_ns", e.request_ns + host().boot_to_epoch_ns)
			.u64("acquired_ts_ns", e.acquired_ns ? e.acquired_ns + host().boot_to_epoch_ns : 0);
		r.emit(host());
	}

	// A thread's name: its own while it runs, else the one kept with its lock figures.
	std::string thread_comm(uint32_t pid, uint32_t tid)
	{
		std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm");
		std::string c;
		if (std::getline(in, c) && !c.empty())
			return c;
		if (!skel_ || bpf_map__fd(skel_->maps.lk_threads) < 0)
			return "";
		int ncpu = libbpf_num_possible_cpus();
		if (ncpu <= 0)
			return "";
		size_t stride = (sizeof(lk_thread_stats) + 7) & ~size_t(7);
		std::vector<uint8_t> buf(stride * static_cast<size_t>(ncpu));
		if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lk_threads), &tid, buf.data()) != 0)
			return "";
		for (int cpu = 0; cpu < ncpu; cpu++) {
			lk_thread_stats t;
			std::memcpy(&t, buf.data() + stride * static_cast<size_t>(cpu), sizeof t);
			if (t.comm[0])
				return cstr(t.comm, sizeof t.comm);
		}
		return "";
	}

	void on_contention(const lk_contention &e)
	{
		std::string holder_comm = cstr(e.holder_comm, sizeof e.holder_comm);
		if (holder_comm.empty() && e.holder_tid)
			holder_comm = thread_comm(e.h.pid, e.holder_tid);
		sdk::record r("lock", "contention");
		r.header(e.h, host());
		r.u64("futex_addr", e.futex_addr, PI_FMT_HEX)
			.u64("lock_addr", e.lock_addr, PI_FMT_HEX)
			.str("lock_type", type_name(e.lock_type))
			.str("futex_op", futex_cmd_name(e.futex_op))
			.u64("wait_ns", e.wait_ns, PI_FMT_DURATION_NS)
			.i64("ret", e.ret, PI_FMT_ERRNO)
			.u64("holder_tid", e.holder_tid)
			.str("holder_comm", holder_comm)
			.u64("holder_held_ns", e.holder_held_ns, PI_FMT_DURATION_NS)
			.u64("holder_readers", e.holder_readers)
			.u64("waker_tid", e.waker_tid);
		r.emit(host());
	}

	// ---------------------------------------------------------------- periodic records

	// Whether processes and threads have ended, each asked of /proc once per report.
	class ended_cache {
	public:
		bool process(uint32_t tgid)
		{
			auto [it, fresh] = procs_.try_emplace(tgid, false);
			if (fresh)
				it->second = process_ended(tgid);
			return it->second;
		}
		bool thread(uint32_t tgid, uint32_t tid)
		{
			if (process(tgid))
				return true;
			std::string path = "/proc/" + std::to_string(tgid) + "/task/" + std::to_string(tid);
			return access(path.c_str(), F_OK) != 0;
		}

	private:
		std::unordered_map<uint32_t, bool> procs_;
	};

	// A process's name: from /proc while it runs, else from its main thread's figures.
	const std::string &comm_of(uint32_t pid)
	{
		auto it = comms_.find(pid);
		if (it == comms_.end() || it->second.empty()) {
			std::string c = proc_comm(pid);
			auto t = prev_threads_.find(pid);
			if (c.empty() && t != prev_threads_.end())
				c = cstr(t->second.comm, sizeof t->second.comm);
			it = comms_.insert_or_assign(pid, c).first;
		}
		return it->second;
	}

	// Rank entries by wait time (descending) and keep the top cfg_.top (0: all).
	template <typename K, typename V, typename W> std::vector<std::pair<K, V>> ranked(std::vector<std::pair<K, V>> v, W &&wait)
	{
		std::stable_sort(v.begin(), v.end(), [&](const auto &a, const auto &b) { return wait(a.second) > wait(b.second); });
		if (cfg_.top && v.size() > cfg_.top)
			v.resize(cfg_.top);
		return v;
	}

	void report_locks(uint64_t ts, bool final)
	{
		int fd = bpf_map__fd(skel_->maps.lk_locks);
		percpu_reader<lk_lock_key, lk_lock_stats> rd(fd);
		auto now = rd.read_all(add_lock);
		std::vector<std::pair<lk_lock_key, lk_lock_stats>> interval, total;
		ended_cache ended;
		for (auto it = now.begin(); it != now.end();) {
			const auto &[k, v] = *it;
			lk_lock_stats d = v;
			auto p = prev_locks_.find(k);
			if (p != prev_locks_.end())
				sub_lock(d, p->second);
			bool active = d.acquisitions || d.failed || d.releases;
			if (active)
				interval.emplace_back(k, d);
			// A lock of an ended process, reported already: its figures leave the kernel's map
			// (room for the processes still to come) and stay here for the totals.
			if (!active && !final && ended.process(k.tgid)) {
				comm_of(k.tgid);
				retired_locks_[k] = v;
				bpf_map_delete_elem(fd, &k);
				it = now.erase(it);
				continue;
			}
			if (!retired_locks_.count(k))
				total.emplace_back(k, v);
			++it;
		}
		if (final)
			for (const auto &[k, v] : retired_locks_)
				total.emplace_back(k, v);
		prev_locks_ = std::move(now);
		// every process's figures per lock type, whatever `top` leaves out of the lock records
		emit_processes("interval", interval, ts);
		if (final)
			emit_processes("total", total, ts);
		auto wait = [](const lk_lock_stats &s) { return s.wait_total_ns; };
		emit_locks("interval", ranked(std::move(interval), wait), ts);
		if (final)
			emit_locks("total", ranked(std::move(total), wait), ts);
	}

	// One record per (process, lock type) with activity: the sum over all its locks.
	void emit_processes(const char *window, const std::vector<std::pair<lk_lock_key, lk_lock_stats>> &v,
			    uint64_t ts)
	{
		struct sum {
			lk_lock_stats s{};
			uint64_t locks = 0;
		};
		std::map<std::pair<uint32_t, uint32_t>, sum> by; // (tgid, type)
		for (const auto &[k, s] : v) {
			auto &b = by[{k.tgid, k.type}];
			add_lock(b.s, s);
			b.locks++;
		}
		for (const auto &[key, b] : by) {
			const lk_lock_stats &s = b.s;
			sdk::record r("lock", "process");
			r.ts(ts).ids(key.first, 0).comm(comm_of(key.first)).pid_start(s.pid_start_ns);
			periodic(r, "process", window);
			r.str("lock_type", type_name(key.second))
				.u64("locks", b.locks);
			lock_fields(r, s);
			r.emit(host());
		}
	}

	// The figures of one lock, or of several summed.
	static void lock_fields(sdk::record &r, const lk_lock_stats &s)
	{
		r.u64("acquisitions", s.acquisitions)
			.u64("contended", s.contended)
			.u64("failed", s.failed)
			.u64("releases", s.releases)
			.u64("wait_total_ns", s.wait_total_ns, PI_FMT_DURATION_NS)
			.u64("wait_max_ns", s.wait_max_ns, PI_FMT_DURATION_NS)
			.u64("hold_total_ns", s.hold_total_ns, PI_FMT_DURATION_NS)
			.u64("hold_max_ns", s.hold_max_ns, PI_FMT_DURATION_NS)
			.u64v("wait_hist_ns", hist(s.wait_hist), PI_FMT_LOG2_HIST)
			.u64v("hold_hist_ns", hist(s.hold_hist), PI_FMT_LOG2_HIST);
	}

	// The fields every periodic record starts with: what it is about, and the window it covers
	// (interval: since the previous tick; total: since the activation).
	void periodic(sdk::record &r, const char *scope, const char *window) const
	{
		bool total = std::string_view(window) == "total";
		r.str("scope", scope)
			.str("window", window)
			.u64("interval_ns", total ? tick_ns_ - activated_ns_ : tick_ns_ - prev_tick_ns_, PI_FMT_DURATION_NS);
	}

	void emit_locks(const char *window, const std::vector<std::pair<lk_lock_key, lk_lock_stats>> &v, uint64_t ts)
	{
		uint64_t rank = 0;
		for (const auto &[k, s] : v) {
			sdk::record r("lock", "lock");
			r.ts(ts).ids(k.tgid, 0).comm(comm_of(k.tgid)).pid_start(s.pid_start_ns);
			periodic(r, "process", window);
			r.u64("rank", ++rank)
				.u64("lock_addr", k.addr, PI_FMT_HEX)
				.str("lock_type", type_name(k.type));
			lock_fields(r, s);
			r.emit(host());
		}
	}

	void report_threads(uint64_t ts, bool final)
	{
		int fd = bpf_map__fd(skel_->maps.lk_threads);
		percpu_reader<uint32_t, lk_thread_stats> rd(fd);
		auto now = rd.read_all(add_thread);
		std::vector<std::pair<uint32_t, lk_thread_stats>> interval, total;
		ended_cache ended;
		for (auto it = now.begin(); it != now.end();) {
			const auto &[k, v] = *it;
			lk_thread_stats d = v;
			auto p = prev_threads_.find(k);
			if (p != prev_threads_.end())
				sub_thread(d, p->second);
			bool active = d.acquisitions || d.failed || d.releases;
			if (active)
				interval.emplace_back(k, d);
			// an ended thread's figures, reported already, leave the kernel's map (see locks)
			if (!active && !final && ended.thread(v.tgid, k)) {
				if (k == v.tgid && !comms_.count(k))
					comms_[k] = cstr(v.comm, sizeof v.comm);
				retired_threads_[k] = v;
				bpf_map_delete_elem(fd, &k);
				it = now.erase(it);
				continue;
			}
			if (!retired_threads_.count(k))
				total.emplace_back(k, v);
			++it;
		}
		if (final)
			for (const auto &[k, v] : retired_threads_)
				total.emplace_back(k, v);
		prev_threads_ = std::move(now);
		auto wait = [](const lk_thread_stats &s) { return s.wait_total_ns; };
		emit_threads("interval", ranked(std::move(interval), wait), ts);
		if (final)
			emit_threads("total", ranked(std::move(total), wait), ts);
	}

	void emit_threads(const char *window, const std::vector<std::pair<uint32_t, lk_thread_stats>> &v, uint64_t ts)
	{
		uint64_t rank = 0;
		for (const auto &[tid, s] : v) {
			sdk::record r("lock", "thread");
			r.ts(ts).ids(s.tgid, tid).comm(cstr(s.comm, sizeof s.comm)).pid_start(s.pid_start_ns);
			periodic(r, "thread", window);
			r.u64("rank", ++rank)
				.u64("acquisitions", s.acquisitions)
				.u64("contended", s.contended)
				.u64("failed", s.failed)
				.u64("releases", s.releases)
				.u64("wait_total_ns", s.wait_total_ns, PI_FMT_DURATION_NS)
				.u64("wait_max_ns", s.wait_max_ns, PI_FMT_DURATION_NS)
				.u64("hold_total_ns", s.hold_total_ns, PI_FMT_DURATION_NS)
				.u64("hold_max_ns", s.hold_max_ns, PI_FMT_DURATION_NS)
				.u64v("wait_hist_ns", hist(s.wait_hist), PI_FMT_LOG2_HIST)
				.u64v("hold_hist_ns", hist(s.hold_hist), PI_FMT_LOG2_HIST);
			r.emit(host());
		}
	}

	struct futex_word {
		lk_futex_stats s{};
		std::vector<uint64_t> waiters, wakers;
	};

	void report_futexes(uint64_t ts, bool final)
	{
		int fd = bpf_map__fd(skel_->maps.lk_futex);
		percpu_reader<lk_futex_key, lk_futex_stats> rd(fd);
		auto now = rd.read_all(add_futex);
		// A whole-system target meets many futex words: when the map is half full, words idle
		// in this interval leave it and their figures are kept here for the totals.
		bool prune = now.size() > cfg_.max_futexes / 2;
		// per word: (tgid, addr)
		std::map<std::pair<uint32_t, uint64_t>, futex_word> interval, total;
		auto add = [](futex_word &w, const lk_futex_key &k, const lk_futex_stats &s) {
			add_futex(w.s, s);
			if (s.waits && std::find(w.waiters.begin(), w.waiters.end(), k.tid) == w.waiters.end())
				w.waiters.push_back(k.tid);
			if (s.wakes && std::find(w.wakers.begin(), w.wakers.end(), k.tid) == w.wakers.end())
				w.wakers.push_back(k.tid);
		};
		std::vector<lk_futex_key> idle;
		for (const auto &[k, v] : now) {
			lk_futex_stats d = v;
			auto p = prev_futex_.find(k);
			if (p != prev_futex_.end())
				sub_futex(d, p->second);
			if (d.waits || d.wakes)
				add(interval[{k.tgid, k.addr}], k, d);
			else if (prune)
				idle.push_back(k);
		}
		for (const auto &k : idle) {
			add_futex(retired_futex_[k], now[k]);
			bpf_map_delete_elem(fd, &k);
			now.erase(k);
		}
		for (const auto &[k, v] : retired_futex_) {
			lk_futex_stats sum = v;
			auto n = now.find(k);
			if (n != now.end())
				add_futex(sum, n->second);
			add(total[{k.tgid, k.addr}], k, sum);
		}
		for (const auto &[k, v] : now)
			if (!retired_futex_.count(k))
				add(total[{k.tgid, k.addr}], k, v);
		prev_futex_ = std::move(now);
		auto flat = [](std::map<std::pair<uint32_t, uint64_t>, futex_word> &m) {
			std::vector<std::pair<std::pair<uint32_t, uint64_t>, futex_word>> v(m.begin(), m.end());
			return v;
		};
		auto wait = [](const futex_word &w) { return w.s.wait_total_ns; };
		emit_futexes("interval", ranked(flat(interval), wait), ts);
		if (final)
			emit_futexes("total", ranked(flat(total), wait), ts);
	}

	void emit_futexes(const char *window,
			  const std::vector<std::pair<std::pair<uint32_t, uint64_t>, futex_word>> &v, uint64_t ts)
	{
		uint64_t rank = 0;
		for (const auto &[k, w] : v) {
			sdk::record r("lock", "futex");
			r.ts(ts).ids(k.first, 0).comm(comm_of(k.first)).pid_start(w.s.pid_start_ns);
			periodic(r, "process", window);
			r.u64("rank", ++rank)
				.u64("futex_addr", k.second, PI_FMT_HEX)
				.u64("waits", w.s.waits)
				.u64("wait_total_ns", w.s.wait_total_ns, PI_FMT_DURATION_NS)
				.u64("wait_max_ns", w.s.wait_max_ns, PI_FMT_DURATION_NS)
				.u64("timeouts", w.s.timeouts)
				.u64("wakes", w.s.wakes)
				.u64("woken", w.s.woken)
				.u64v("waiter_tids", w.waiters)
				.u64v("waker_tids", w.wakers);
			r.emit(host());
		}
	}

	void report_system(uint64_t ts, bool final)
	{
		int fd = bpf_map__fd(skel_->maps.lk_system);
		int ncpu = libbpf_num_possible_cpus();
		if (ncpu <= 0)
			return;
		std::vector<lk_sys_stats> vals(static_cast<size_t>(ncpu));
		for (uint32_t k = 0; k < 2; k++) {
			if (k == 1 && !cfg_.system)
				continue;
			if (bpf_map_lookup_elem(fd, &k, vals.data()) != 0)
				continue;
			lk_sys_stats s{};
			for (const auto &v : vals)
				add_sys(s, v);
			lk_sys_stats d = s;
			sub_sys(d, prev_sys_[k]);
			prev_sys_[k] = s;
			emit_system(k == 0 ? "target" : "system", "interval", d, ts);
			if (final)
				emit_system(k == 0 ? "target" : "system", "total", s, ts);
		}
	}

	void emit_system(const char *scope, const char *window, const lk_sys_stats &s, uint64_t ts)
	{
		sdk::record r("lock", "futex_summary");
		r.ts(ts).ids(0, 0).comm("");
		periodic(r, scope, window);
		r.str("mode", full_ ? "full" : "contention")
			.u64("waits", s.waits)
			.u64("wait_total_ns", s.wait_total_ns, PI_FMT_DURATION_NS)
			.u64("wait_max_ns", s.wait_max_ns, PI_FMT_DURATION_NS)
			.u64("wakes", s.wakes)
			.u64("woken", s.woken)
			.u64v("wait_hist_ns", hist(s.wait_hist), PI_FMT_LOG2_HIST);
		r.emit(host());
	}

	config cfg_;
	lock_bpf *skel_ = nullptr;
	sdk::links links_;
	std::map<uint32_t, proc_state> procs_;
	std::map<std::vector<file_id>, probe_plan> plans_; // per set of libraries, this activation
	link_reaper reaper_;
	bool full_ = false;
	bool uprobes_loaded_ = false; // the uprobe programs are loaded (not mode contention, and the kernel has cookies)
	bool follow_ = false;
	bool task_hash_ = false; // lk_task is a hash keyed by thread id (no task storage before 5.11)
	bool multi_ = false; // uprobe_multi links (Linux 6.6+), else one perf-event uprobe per place
	std::map<lk_lock_key, lk_lock_stats> prev_locks_;
	std::map<uint32_t, lk_thread_stats> prev_threads_;
	std::map<lk_lock_key, lk_lock_stats> retired_locks_;   // of ended processes, out of the map
	std::map<uint32_t, lk_thread_stats> retired_threads_; // ended threads, out of the map
	std::map<lk_futex_key, lk_futex_stats> prev_futex_;
	std::map<lk_futex_key, lk_futex_stats> retired_futex_; // figures of words pruned from the map
	lk_sys_stats prev_sys_[2]{};
	// boot ns: the activation, the previous tick and the one being reported (interval_ns)
	uint64_t activated_ns_ = 0, prev_tick_ns_ = 0, tick_ns_ = 0;
	std::unordered_map<uint32_t, std::string> comms_;
};

} // namespace procimage::lock

PROCIMAGE_DEFINE_PROBE(procimage::lock::lock_probe, "lock", PROCIMAGE_VERSION,
		       "user-space locks: mutex/rwlock/spinlock wait and hold times, futex contention and holders");
