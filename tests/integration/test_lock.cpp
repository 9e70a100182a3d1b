// SPDX-License-Identifier: Apache-2.0
// lock probe end to end: the wl-lock workload holds and waits for pthread locks on a fixed
// schedule and measures every hold and wait itself; what procimage reports must agree with it
// within 1 ms, name the right threads, errors and holders, and attach to the target only.
#include "support.hpp"
#include "../../plugins/lock/placement.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <dlfcn.h>
#include <link.h>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <pthread.h>
#include <set>
#include <sstream>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using nlohmann::json;
namespace t = procimage::test;

namespace {

constexpr int64_t MS = 1000000;

// The lock records of one event; of the `total` rows (every tick has them for the entities it
// shows), only the last tick's, which hold the whole run's figures.
std::vector<json> select(const std::vector<json> &recs, const std::string &event,
			 const std::function<bool(const json &)> &pred = nullptr)
{
	uint64_t last = 0;
	for (const auto &e : t::select_records(recs, "lock", event))
		if (e.value("window", "") == "total")
			last = std::max(last, e["ts_ns"].get<uint64_t>());
	return t::select_records(recs, "lock", event, [&](const json &e) {
		if (e.value("window", "") == "total" && e["ts_ns"].get<uint64_t>() != last)
			return false;
		return !pred || pred(e);
	});
}

json one(const std::vector<json> &v, const std::string &what)
{
	INFO(what);
	REQUIRE(v.size() == 1);
	return v[0];
}

int64_t i(const json &j, const char *k) { return j.at(k).get<int64_t>(); }

#define CHECK_NEAR(a, b, tol)                                                                      \
	do {                                                                                       \
		int64_t a_ = (a), b_ = (b);                                                        \
		INFO(#a " = " << a_ << ", " #b " = " << b_);                                       \
		CHECK(std::llabs(a_ - b_) <= (tol));                                               \
	} while (0)

std::string pipeline(const t::temp_dir &d, const std::string &probe_cfg, const std::string &target = "")
{
	std::string p = R"({"version": 1, "probes": {"lock": )" + probe_cfg + "}" +
			(target.empty() ? "" : R"(, "target": )" + target) + R"(, "sinks": {"jsonl": {"path": ")" +
			d.file("out.jsonl") + R"("}}})";
	t::write_file(d.file("pipeline.json"), p);
	return d.file("pipeline.json");
}

// procimage in the background, stderr to a file; waits until it collects.
struct tool {
	pid_t pid = -1;
	std::string err;
	tool(const std::vector<std::string> &args, const std::string &errfile) : err(errfile)
	{
		pid = fork();
		if (pid == 0) {
			int fd = open(errfile.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
			dup2(fd, 2);
			std::vector<char *> argv;
			std::string bin = t::procimage_bin();
			argv.push_back(bin.data());
			std::vector<std::string> copy = args;
			for (auto &a : copy)
				argv.push_back(a.data());
			argv.push_back(nullptr);
			execv(bin.c_str(), argv.data());
			_exit(127);
		}
	}
	bool ready()
	{
		for (int n = 0; n < 400; n++) {
			if (t::read_file(err).find("collecting for") != std::string::npos)
				return true;
			int st;
			if (waitpid(pid, &st, WNOHANG) == pid) {
				pid = -1;
				return false;
			}
			std::this_thread::sleep_for(std::chrono::milliseconds(25));
		}
		return false;
	}
	int stop()
	{
		if (pid < 0)
			return -1;
		kill(pid, SIGINT);
		int st = 0;
		waitpid(pid, &st, 0);
		pid = -1;
		return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	~tool()
	{
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, nullptr, 0);
		}
	}
};

// A program started held on a FIFO: it runs once a byte is written to the FIFO.
struct held {
	pid_t pid = -1;
	std::string fifo;
	held(const std::vector<std::string> &argv, const std::string &fifo_path) : fifo(fifo_path)
	{
		mkfifo(fifo.c_str(), 0600);
		pid = fork();
		if (pid == 0) {
			std::vector<char *> a;
			std::vector<std::string> copy = argv;
			for (auto &s : copy)
				a.push_back(s.data());
			a.push_back(nullptr);
			execv(a[0], a.data());
			_exit(127);
		}
	}
	void go() { t::sh("echo x > " + fifo); }
	int wait()
	{
		int st = 0;
		waitpid(pid, &st, 0);
		pid = -1;
		return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	~held()
	{
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, nullptr, 0);
		}
	}
};

struct mapping {
	uintptr_t start = 0;
	uint64_t offset = 0;
	std::string path;
};

std::vector<mapping> maps_of(pid_t pid)
{
	std::vector<mapping> out;
	std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream ls(line);
		std::string range, perms, off, dev, ino;
		mapping m;
		ls >> range >> perms >> off >> dev >> ino >> m.path;
		m.start = std::stoull(range, nullptr, 16);
		m.offset = std::stoull(off, nullptr, 16);
		out.push_back(m);
	}
	return out;
}

// A libc function as libc itself defines it (in an instrumented build, &pthread_mutex_lock is
// the sanitizer's interceptor in the test program, not libc's code).
void *libc_fn(const char *name)
{
	static void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
	void *fn = libc ? dlsym(libc, name) : nullptr;
	REQUIRE(fn);
	return fn;
}

// The byte at a libc function's first instruction in another process (0xcc: a uprobe is
// there). The function's place is found in this process: same file, same offset from its base.
int libc_byte(pid_t pid, void *fn)
{
	Dl_info info{};
	if (!dladdr(fn, &info) || !info.dli_fbase)
		return -1;
	uintptr_t self_base = reinterpret_cast<uintptr_t>(info.dli_fbase);
	uintptr_t rel = reinterpret_cast<uintptr_t>(fn) - self_base;
	std::string path;
	for (const auto &m : maps_of(getpid()))
		if (m.start == self_base)
			path = m.path;
	uintptr_t base = 0;
	for (const auto &m : maps_of(pid))
		if (!path.empty() && m.path == path && m.offset == 0) {
			base = m.start;
			break;
		}
	if (!base)
		return -1;
	int fd = open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY);
	if (fd < 0)
		return -1;
	unsigned char b = 0;
	ssize_t n = pread(fd, &b, 1, static_cast<off_t>(base + rel));
	close(fd);
	return n == 1 ? b : -1;
}

bool no_lost(const std::vector<json> &recs)
{
	return std::none_of(recs.begin(), recs.end(), [](const json &e) { return e["event"] == "lost"; });
}

// The offset in its file of a libc function as this process maps it (the workloads map the
// same file).
uint64_t file_offset(void *fn)
{
	auto at = reinterpret_cast<uintptr_t>(fn);
	std::ifstream in("/proc/self/maps");
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream ls(line);
		std::string range, perms, off;
		ls >> range >> perms >> off;
		uintptr_t lo = std::stoull(range, nullptr, 16), hi = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
		if (at >= lo && at < hi)
			return at - lo + std::stoull(off, nullptr, 16);
	}
	return 0;
}

// Where the lock probe puts a function's entry-side uprobe when it has no return probe: the
// probe's own rule (placement.hpp) applied to the function's code as this process maps it.
uint64_t placed(void *fn)
{
	Dl_info info{};
	void *entry = nullptr;
	if (!dladdr1(fn, &info, &entry, RTLD_DL_SYMENT) || !entry)
		return 0;
	const auto *sym = static_cast<const ElfW(Sym) *>(entry);
	return procimage::lock::probe_place(static_cast<const uint8_t *>(fn), sym->st_size,
					    procimage::lock::reg_bit(procimage::lock::RDI));
}

long sys_bpf(int cmd, void *attr, size_t size) { return syscall(__NR_bpf, cmd, attr, size); }

// What the kernel says about one uprobe_multi link (struct bpf_link_info, Linux 6.8+; the
// system's linux/bpf.h predates these fields, so the layout is spelled out).
struct uprobe_multi_link {
	uint32_t id = 0, prog_id = 0, pid = 0;
	bool ret = false;
	std::set<uint64_t> offsets;
};

constexpr uint32_t LINK_TYPE_UPROBE_MULTI = 12;
constexpr uint32_t UPROBE_MULTI_RETURN = 1;

// Every uprobe_multi link on the machine that targets process pid.
std::vector<uprobe_multi_link> uprobe_multi_links(pid_t pid)
{
	std::vector<uprobe_multi_link> out;
	uint32_t id = 0;
	for (;;) {
		union bpf_attr a{};
		a.start_id = id;
		if (sys_bpf(BPF_LINK_GET_NEXT_ID, &a, sizeof a) != 0)
			break;
		id = a.next_id;
		union bpf_attr g{};
		g.link_id = id;
		int fd = static_cast<int>(sys_bpf(BPF_LINK_GET_FD_BY_ID, &g, sizeof g));
		if (fd < 0)
			continue; // gone meanwhile
		std::vector<uint64_t> offs(256);
		struct {
			uint32_t type, id, prog_id, pad;
			uint64_t path, offsets, ref_ctr_offsets, cookies;
			uint32_t path_size, count, flags, pid;
		} info{};
		info.offsets = reinterpret_cast<uint64_t>(offs.data());
		info.count = static_cast<uint32_t>(offs.size());
		union bpf_attr q{};
		q.info.bpf_fd = static_cast<uint32_t>(fd);
		q.info.info_len = sizeof info;
		q.info.info = reinterpret_cast<uint64_t>(&info);
		long rc = sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &q, sizeof q);
		close(fd);
		if (rc != 0 || info.type != LINK_TYPE_UPROBE_MULTI || info.pid != static_cast<uint32_t>(pid))
			continue;
		uprobe_multi_link l;
		l.id = id;
		l.prog_id = info.prog_id;
		l.pid = info.pid;
		l.ret = info.flags & UPROBE_MULTI_RETURN;
		l.offsets.insert(offs.begin(), offs.begin() + std::min<size_t>(info.count, offs.size()));
		out.push_back(l);
	}
	return out;
}

// How many times a BPF program has run (counted while BPF run-time statistics are enabled).
uint64_t prog_runs(uint32_t prog_id)
{
	union bpf_attr g{};
	g.prog_id = prog_id;
	int fd = static_cast<int>(sys_bpf(BPF_PROG_GET_FD_BY_ID, &g, sizeof g));
	if (fd < 0)
		return 0;
	bpf_prog_info info{};
	union bpf_attr q{};
	q.info.bpf_fd = static_cast<uint32_t>(fd);
	q.info.info_len = sizeof info;
	q.info.info = reinterpret_cast<uint64_t>(&info);
	long rc = sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &q, sizeof q);
	close(fd);
	return rc == 0 ? info.run_cnt : 0;
}

// The record convention every periodic lock record follows: `scope` says what it is about, a
// window of interval_ns (the intervals chain: their lengths add up to the total's), the
// process's start beside its pid, histograms in *_hist_ns. start_ticks: the workload's own
// start as /proc/self/stat gives it (clock ticks since boot, clk_tck a second).
void check_convention(const std::vector<json> &recs, long pid, long start_ticks, long clk_tck)
{
	REQUIRE(start_ticks > 0);
	REQUIRE(clk_tck > 0);
	const int64_t tick_ns = 1000000000 / clk_tck;
	uint64_t pid_start = 0;
	size_t periodic = 0;
	for (const auto &e : recs) {
		if (e.value("probe", "") != "lock")
			continue;
		INFO(e.dump());
		CHECK(!e.contains("wait_hist"));
		CHECK(!e.contains("hold_hist"));
		if (e["pid"] == pid && e.contains("pid_start_ns")) {
			if (!pid_start)
				pid_start = e["pid_start_ns"].get<uint64_t>();
			CHECK(e["pid_start_ns"] == pid_start); // every record names the same process
		}
		const std::string ev = e["event"];
		if (ev == "acquisition" || ev == "contention") {
			CHECK(e.contains("pid_start_ns"));
			continue;
		}
		REQUIRE(e.contains("window"));
		CHECK(i(e, "interval_ns") > 0);
		periodic++;
		if (ev == "futex_summary") {
			CHECK((e["scope"] == "target" || e["scope"] == "system"));
			CHECK(e["pid"] == 0);
			CHECK(e["tid"] == 0);
			CHECK(e["comm"] == "");
			CHECK(!e.contains("pid_start_ns"));
		} else if (ev == "thread") {
			CHECK(e["scope"] == "thread");
			CHECK(e["tid"] != 0);
			CHECK(e.contains("pid_start_ns"));
		} else {
			CHECK(e["scope"] == "process"); // lock, process, futex: one process, no thread
			CHECK(e["tid"] == 0);
			CHECK(e.contains("pid_start_ns"));
		}
	}
	CHECK(periodic >= 10);
	// the kernel's start time of the workload, as /proc counts it in ticks
	REQUIRE(pid_start > 0);
	CHECK(std::llabs(static_cast<int64_t>(pid_start) - start_ticks * tick_ns) <= tick_ns);
	// the interval windows of the target's summary cover the total's, one after the other; at
	// every tick the running total covers the intervals so far, and counts their waits
	for (const char *scope : {"target", "system"}) {
		INFO(scope);
		uint64_t sum = 0, waits = 0, totals = 0, intervals = 0;
		for (const auto &e : t::select_records(recs, "lock", "futex_summary",
						       [&](const json &e) { return e["scope"] == scope; })) {
			if (e["window"] == "interval") {
				sum += e["interval_ns"].get<uint64_t>();
				waits += e["waits"].get<uint64_t>();
				intervals++;
				continue;
			}
			totals++;
			CHECK(e["interval_ns"].get<uint64_t>() == sum);
			CHECK(e["waits"].get<uint64_t>() == waits);
		}
		CHECK(totals == intervals); // one of each per tick
		CHECK(totals >= 1);
		json tot = one(select(recs, "futex_summary",
				      [&](const json &e) { return e["scope"] == scope && e["window"] == "total"; }),
			       "total summary");
		CHECK(sum == tot["interval_ns"].get<uint64_t>());
	}
}

} // namespace

// The wl-lock schedule under procimage with the probe settings extra (JSON members or "").
// lock_return: the blocking lock functions have return probes (else their acquisition is
// inferred from their futex waits). env: extra environment for procimage.
void check_schedule(const std::string &extra, bool lock_return, const std::map<std::string, std::string> &env = {})
{
	t::temp_dir d;
	auto p = pipeline(d, R"({"acquisitions": true, "contention_min_us": 500)" + extra + "}");
	auto r = t::run({t::procimage_bin(), "-q", "--pipeline", p, "--", t::build_dir() + "/wl-lock", d.file("log")}, env);
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto truth = t::read_kv(d.file("log"));
	REQUIRE(truth.count("done"));
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	const long pid = truth["pid"], M = truth["mutex_addr"], M2 = truth["mutex2_addr"], RW = truth["rwlock_addr"],
		   S = truth["spin_addr"];
	const long A = truth["a_tid"], B = truth["b_tid"], R1 = truth["r1_tid"], R2 = truth["r2_tid"], W = truth["w_tid"],
		   X = truth["x_tid"], Y = truth["y_tid"];
	for (const auto &rec : select(recs, "acquisition"))
		CHECK(rec["pid"] == pid);
	auto acq = [&](long tid, const std::string &op, long addr) {
		return one(select(recs, "acquisition",
				  [&](const json &e) { return e["tid"] == tid && e["op"] == op && e["lock_addr"] == addr; }),
			   op + " by " + std::to_string(tid));
	};

	// mutex: A holds it 20 ms
	json a = acq(A, "pthread_mutex_lock", M);
	CHECK(a["lock_type"] == "mutex");
	CHECK(a["acquired"] == true);
	CHECK(a["ret"] == 0);
	CHECK(a["comm"] == "wl-holder-a");
	CHECK_NEAR(i(a, "hold_ns"), truth["a_hold_ns"], MS);
	CHECK(truth["a_hold_ns"] >= 20 * MS);
	// B's trylock fails at once with EBUSY
	json tr = acq(B, "pthread_mutex_trylock", M);
	CHECK(tr["ret"] == -EBUSY);
	CHECK(tr["acquired"] == false);
	CHECK(tr["hold_ns"] == 0);
	CHECK(tr["contended"] == false);
	CHECK(truth["b_trylock_ret"] == EBUSY);
	// B's timed lock gives up after 5 ms with ETIMEDOUT, having slept in the kernel
	json tl = acq(B, "pthread_mutex_timedlock", M);
	CHECK(tl["ret"] == -ETIMEDOUT);
	CHECK(tl["acquired"] == false);
	CHECK(tl["contended"] == true);
	CHECK_NEAR(i(tl, "wait_ns"), truth["b_timedlock_wait_ns"], MS);
	CHECK(truth["b_timedlock_ret"] == ETIMEDOUT);
	// B's lock waits for A's release, then holds 2 ms
	json b = acq(B, "pthread_mutex_lock", M);
	CHECK(b["contended"] == true);
	CHECK_NEAR(i(b, "wait_ns"), truth["b_lock_wait_ns"], MS);
	CHECK_NEAR(i(b, "hold_ns"), truth["b_hold_ns"], MS);
	CHECK(i(b, "futex_wait_ns") > 0);
	CHECK(i(b, "futex_wait_ns") <= i(b, "wait_ns"));
	// consistent with the schedule: B asked while A held it, and got it once A released it
	CHECK(i(b, "request_ts_ns") > i(a, "acquired_ts_ns"));
	CHECK(i(b, "acquired_ts_ns") >= i(a, "ts_ns"));
	CHECK(i(tr, "request_ts_ns") > i(a, "acquired_ts_ns"));

	// rwlock: both readers hold it at once, 10 ms each
	json r1 = acq(R1, "pthread_rwlock_rdlock", RW), r2 = acq(R2, "pthread_rwlock_rdlock", RW);
	for (const auto &[rr, key] : {std::pair{r1, "r1_hold_ns"}, std::pair{r2, "r2_hold_ns"}}) {
		CHECK(rr["lock_type"] == "rwlock_read");
		CHECK_NEAR(i(rr, "hold_ns"), truth[key], MS);
	}
	CHECK(std::max(i(r1, "acquired_ts_ns"), i(r2, "acquired_ts_ns")) < std::min(i(r1, "ts_ns"), i(r2, "ts_ns")));
	// the writer waits for both
	json w = acq(W, "pthread_rwlock_wrlock", RW);
	CHECK(w["lock_type"] == "rwlock_write");
	CHECK(w["contended"] == true);
	CHECK_NEAR(i(w, "wait_ns"), truth["w_wait_ns"], MS);
	CHECK_NEAR(i(w, "hold_ns"), truth["w_hold_ns"], MS);
	CHECK(i(w, "acquired_ts_ns") >= std::max(i(r1, "ts_ns"), i(r2, "ts_ns")));

	// spinlock: X holds it 5 ms while Y spins
	json x = acq(X, "pthread_spin_lock", S), y = acq(Y, "pthread_spin_lock", S);
	CHECK(x["lock_type"] == "spin");
	CHECK_NEAR(i(x, "hold_ns"), truth["x_hold_ns"], MS);
	CHECK_NEAR(i(y, "wait_ns"), truth["y_wait_ns"], MS);
	CHECK(i(y, "acquired_ts_ns") >= i(x, "ts_ns"));

	// nested: M2 inside M, in the main thread
	json outer = acq(pid, "pthread_mutex_lock", M), inner = acq(pid, "pthread_mutex_lock", M2);
	CHECK_NEAR(i(outer, "hold_ns"), truth["outer_hold_ns"], MS);
	CHECK_NEAR(i(inner, "hold_ns"), truth["inner_hold_ns"], MS);
	CHECK(outer["depth"] == 1);
	CHECK(inner["depth"] == 2);

	// contention: B's futex wait in pthread_mutex_lock names A as the holder and the waker
	auto bc = select(recs, "contention", [&](const json &e) { return e["tid"] == B && e["lock_addr"] == M; });
	REQUIRE(bc.size() == 2); // the timed lock's wait and the lock's
	json cl = one(select(bc, "contention", [](const json &e) { return e["ret"] == 0; }), "B's lock wait");
	CHECK(cl["futex_addr"] == M); // a mutex's futex word is the mutex
	CHECK(cl["lock_type"] == "mutex");
	CHECK(cl["holder_tid"] == A);
	CHECK(cl["holder_comm"] == "wl-holder-a");
	CHECK(cl["waker_tid"] == A);
	CHECK(i(cl, "wait_ns") <= i(b, "wait_ns"));
	CHECK_NEAR(i(cl, "wait_ns"), truth["b_lock_wait_ns"], MS);
	// A had held it since before B's trylock; B slept until A released it (and then until B
	// ran again, which takes long on a loaded machine)
	CHECK(i(cl, "holder_held_ns") >= truth["b_timedlock_wait_ns"]);
	CHECK(i(cl, "holder_held_ns") < truth["a_hold_ns"]);
	CHECK(i(cl, "holder_held_ns") + i(cl, "wait_ns") >= truth["a_hold_ns"] - MS);
	// when B got the lock: without a return probe, the end of its last futex wait on M (the
	// contention record's time, taken a moment later in the same BPF run); with one, its return
	if (lock_return) {
		CHECK(i(b, "acquired_ts_ns") >= i(cl, "ts_ns"));
	} else {
		CHECK(i(cl, "ts_ns") >= i(b, "acquired_ts_ns"));
		CHECK(i(cl, "ts_ns") - i(b, "acquired_ts_ns") < 100000);
	}
	json ct = one(select(bc, "contention", [](const json &e) { return e["ret"] == -ETIMEDOUT; }), "B's timed wait");
	CHECK(ct["holder_tid"] == A);
	CHECK(ct["waker_tid"] == 0);
	CHECK_NEAR(i(ct, "wait_ns"), truth["b_timedlock_wait_ns"], MS);
	// the writer's wait: the lock was held for reading by the two readers
	json wc = one(select(recs, "contention", [&](const json &e) { return e["tid"] == W; }), "W's wait");
	CHECK(wc["lock_addr"] == RW);
	CHECK(wc.value("lock_symbol", "") == "RW");
	CHECK(wc["lock_type"] == "rwlock_read");
	CHECK(wc["holder_readers"] == 2);
	CHECK(std::set<long>{R1, R2}.count(wc["holder_tid"].get<long>()));
	CHECK(std::set<long>{R1, R2}.count(wc["waker_tid"].get<long>()));

	// per lock, over the whole run
	auto total = [&](long addr, const char *type) {
		return one(select(recs, "lock",
				  [&](const json &e) {
					  return e["window"] == "total" && e["lock_addr"] == addr && e["lock_type"] == type;
				  }),
			   std::string("total for ") + type);
	};
	json tm = total(M, "mutex");
	// the workload's static mutex, named by its symbol table
	CHECK(tm.value("lock_symbol", "") == "M");
	CHECK(tm["acquisitions"] == 3); // A, B, main
	CHECK(tm["failed"] == 2);       // trylock, timedlock
	CHECK(tm["contended"] == 2);    // timedlock, lock
	CHECK(tm["releases"] == 3);
	CHECK(i(tm, "hold_max_ns") == i(a, "hold_ns"));
	CHECK(i(tm, "hold_total_ns") == i(a, "hold_ns") + i(b, "hold_ns") + i(outer, "hold_ns"));
	CHECK(i(tm, "wait_total_ns") >= i(b, "wait_ns") + i(tl, "wait_ns"));
	CHECK(total(RW, "rwlock_read")["acquisitions"] == 2);
	CHECK(total(RW, "rwlock_write")["acquisitions"] == 1);
	CHECK(total(S, "spin")["acquisitions"] == 2);
	CHECK(total(M2, "mutex")["acquisitions"] == 1);
	// ranked by wait time, most first
	auto ranked = select(recs, "lock", [](const json &e) { return e["window"] == "total"; });
	REQUIRE(ranked.size() >= 5);
	for (size_t n = 0; n < ranked.size(); n++) {
		CHECK(ranked[n]["rank"] == n + 1);
		if (n)
			CHECK(i(ranked[n], "wait_total_ns") <= i(ranked[n - 1], "wait_total_ns"));
	}
	// per thread
	json tb = one(select(recs, "thread", [&](const json &e) { return e["window"] == "total" && e["tid"] == B; }),
		      "B's totals");
	CHECK(tb["acquisitions"] == 1);
	CHECK(tb["failed"] == 2);
	CHECK(tb["comm"] == "wl-waiter-b");
	// futex words: M's waiter is B and its wakers include A
	json fm = one(select(recs, "futex", [&](const json &e) { return e["window"] == "total" && e["futex_addr"] == M; }),
		      "M's futex word");
	CHECK(fm["waiter_tids"] == json::array({B}));
	CHECK(std::find(fm["waker_tids"].begin(), fm["waker_tids"].end(), json(A)) != fm["waker_tids"].end());
	CHECK(fm["timeouts"] == 1);
	// target beside the whole system
	json st = one(select(recs, "futex_summary", [](const json &e) { return e["window"] == "total" && e["scope"] == "target"; }),
		      "target summary");
	json ss = one(select(recs, "futex_summary", [](const json &e) { return e["window"] == "total" && e["scope"] == "system"; }),
		      "system summary");
	CHECK(st["mode"] == "full");
	CHECK(i(st, "waits") >= 3);
	CHECK(i(ss, "waits") >= i(st, "waits"));
	CHECK(i(ss, "wait_total_ns") >= i(st, "wait_total_ns"));
	CHECK(no_lost(recs));
	check_convention(recs, pid, truth["start_ticks"], truth["clk_tck"]);
}

TEST_CASE("lock: holds, waits, errors and holders on the wl-lock schedule (-- CMD)")
{
	REQUIRE_ROOT_OR_SKIP();
	check_schedule("", false);
}

TEST_CASE("lock: the same schedule with each thread's state in a hash keyed by thread id (kernels without task storage)")
{
	REQUIRE_ROOT_OR_SKIP();
	check_schedule("", false, {{"PROCIMAGE_NO_TASK_STORAGE", "1"}});
}

TEST_CASE("lock: the same schedule with return probes on the blocking functions (lock_return)")
{
	REQUIRE_ROOT_OR_SKIP();
	check_schedule(R"(, "lock_return": true)", true);
}

// Uncontended lock/unlock pairs: how many uprobe hits each costs and where they are, read from
// the kernel's own link and program accounting, and the same figures either way.
// entry_place: "uprobe_place": "entry" (every probe at its function's first instruction).
void check_hits(bool lock_return, bool entry_place = false)
{
	t::temp_dir d;
	constexpr long N = 1000;
	held wl({t::build_dir() + "/wl-lock-loop", d.file("log"), d.file("go"), std::to_string(N)}, d.file("go"));
	for (int n = 0; n < 200 && !t::read_kv(d.file("log")).count("recursive_addr"); n++)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	const pid_t pid = wl.pid;
	auto p = pipeline(d,
			  std::string(R"({"acquisitions": true, "ringbuf_kb": 4096, "lock_return": )") +
				  (lock_return ? "true" : "false") + (entry_place ? R"(, "uprobe_place": "entry")" : "") + "}",
			  R"({"tgid": )" + std::to_string(pid) + "}");
	tool tl({"--pipeline", p}, d.file("err"));
	REQUIRE(tl.ready());

	// where the probe's uprobes are: one entry link and one return link in the workload
	const uint64_t lock = file_offset(libc_fn("pthread_mutex_lock")),
		       rd = file_offset(libc_fn("pthread_rwlock_rdlock")),
		       wr = file_offset(libc_fn("pthread_rwlock_wrlock")),
		       unlock = file_offset(libc_fn("pthread_mutex_unlock")),
		       trylock = file_offset(libc_fn("pthread_mutex_trylock"));
	REQUIRE(lock);
	REQUIRE(trylock);
	auto links = uprobe_multi_links(pid);
	REQUIRE(links.size() == 2);
	const auto &entry = links[0].ret ? links[1] : links[0];
	const auto &ret = links[0].ret ? links[0] : links[1];
	REQUIRE(!entry.ret);
	REQUIRE(ret.ret);
	// entry-side places: the try variants at their entry (they have a return probe); the
	// blocking functions without a return probe, and the unlocks, where placement.hpp finds an
	// instruction the kernel emulates (no single-step), unless told to stay at the entry
	auto place_of = [&](void *fn, bool may_move) { return file_offset(fn) + (may_move && !entry_place ? placed(fn) : 0); };
	const uint64_t lock_at = place_of(libc_fn("pthread_mutex_lock"), !lock_return),
		       rd_at = place_of(libc_fn("pthread_rwlock_rdlock"), !lock_return),
		       wr_at = place_of(libc_fn("pthread_rwlock_wrlock"), !lock_return),
		       unlock_at = place_of(libc_fn("pthread_mutex_unlock"), true),
		       rwunlock_at = place_of(libc_fn("pthread_rwlock_unlock"), true);
	if (!lock_return && !entry_place) // the point of it, on this glibc
		CHECK(lock_at + unlock_at + rd_at + wr_at > lock + unlock + rd + wr);
	for (uint64_t off : {lock_at, rd_at, wr_at, unlock_at, rwunlock_at, trylock}) {
		INFO("entry-side place " << off);
		CHECK(entry.offsets.count(off) == 1);
	}
	for (uint64_t f : {lock, rd, wr, unlock}) { // one place per function
		size_t n = 0;
		for (uint64_t off : entry.offsets)
			n += off >= f && off < f + 64;
		CHECK(n == 1);
	}
	CHECK(ret.offsets.count(trylock) == 1); // try variants keep their return probe
	CHECK(ret.offsets.count(unlock) == 0);
	for (uint64_t off : {lock, rd, wr}) {
		INFO("offset " << off << " in the return link: " << ret.offsets.count(off));
		CHECK(ret.offsets.count(off) == (lock_return ? 1u : 0u));
	}

	// uprobe hits = runs of the two programs, counted while run-time statistics are on
	union bpf_attr st{};
	st.enable_stats.type = BPF_STATS_RUN_TIME;
	int stats = static_cast<int>(sys_bpf(BPF_ENABLE_STATS, &st, sizeof st));
	REQUIRE(stats >= 0);
	uint64_t e0 = prog_runs(entry.prog_id), r0 = prog_runs(ret.prog_id);
	wl.go();
	REQUIRE(wl.wait() == 0);
	uint64_t e1 = prog_runs(entry.prog_id), r1 = prog_runs(ret.prog_id);
	close(stats);
	CHECK(tl.stop() == 0);
	const uint64_t pairs = 3 * N, entries = e1 - e0, returns = r1 - r0;
	INFO("entry runs " << entries << ", return runs " << returns << " for " << pairs << " pairs");
	// the pairs, plus the few calls of the error-checking and recursive phases (and libc's own)
	CHECK(entries >= 2 * pairs);
	CHECK(entries <= 2 * pairs + 100);
	if (lock_return) {
		CHECK(returns >= pairs);
		CHECK(returns <= pairs + 100);
	} else {
		CHECK(returns <= 100);
	}

	auto truth = t::read_kv(d.file("log"));
	REQUIRE(truth.count("done"));
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	auto total = [&](long addr, const char *type) {
		return one(select(recs, "lock",
				  [&](const json &e) {
					  return e["window"] == "total" && e["lock_addr"] == addr && e["lock_type"] == type;
				  }),
			   std::string("total for ") + type);
	};
	for (const auto &[addr, type] : {std::pair{truth["mutex_addr"], "mutex"}, std::pair{truth["rwlock_addr"], "rwlock_read"},
					 std::pair{truth["rwlock_addr"], "rwlock_write"}}) {
		json tt = total(addr, type);
		INFO(tt.dump());
		CHECK(tt["acquisitions"] == N);
		CHECK(tt["releases"] == N);
		CHECK(tt["contended"] == 0);
		CHECK(tt["failed"] == 0);
		// Uncontended: without a return probe the acquisition is the request itself; with one,
		// the return is seen after the return probe's own trap, which then counts as waiting.
		if (lock_return)
			CHECK(i(tt, "wait_total_ns") > 0);
		else
			CHECK(tt["wait_total_ns"] == 0);
	}
	// process records: per lock type, every lock of the process summed (the lock records stop
	// at `top`, 10 here, more than this workload has), per interval and in total
	for (const std::string type : {"mutex", "rwlock_read", "rwlock_write"}) {
		INFO(type);
		uint64_t locks_total = 0, intervals = 0;
		for (const auto &e : select(recs, "lock", [&](const json &e) {
			     return e["window"] == "total" && e["lock_type"] == type && e["pid"] == pid;
		     }))
			locks_total += e["acquisitions"].get<uint64_t>();
		for (const auto &e : select(recs, "process", [&](const json &e) {
			     return e["window"] == "interval" && e["lock_type"] == type && e["pid"] == pid;
		     }))
			intervals += e["acquisitions"].get<uint64_t>();
		json pt = one(select(recs, "process",
				     [&](const json &e) {
					     return e["window"] == "total" && e["lock_type"] == type && e["pid"] == pid;
				     }),
			      "process total");
		CHECK(pt["acquisitions"] == locks_total);
		CHECK(intervals == locks_total);
		CHECK(locks_total >= static_cast<uint64_t>(N));
	}
	// thread records: their histograms hold every timed wait (acquisitions and failed calls)
	// and every release
	for (const auto &th : select(recs, "thread", [&](const json &e) { return e["window"] == "total"; })) {
		INFO(th.dump());
		uint64_t waits = 0, holds = 0;
		for (const auto &b : th["wait_hist_ns"])
			waits += b.get<uint64_t>();
		for (const auto &b : th["hold_hist_ns"])
			holds += b.get<uint64_t>();
		CHECK(waits == th["acquisitions"].get<uint64_t>() + th["failed"].get<uint64_t>());
		CHECK(holds == th["releases"].get<uint64_t>());
	}
	// the error-checking mutex taken again: EDEADLK, and the first hold goes on
	const long EM = truth["errcheck_addr"], RM = truth["recursive_addr"];
	CHECK(truth["errcheck_again_ret"] == EDEADLK);
	auto em = select(recs, "acquisition", [&](const json &e) { return e["lock_addr"] == EM; });
	REQUIRE(em.size() == 2);
	json fail = one(select(em, "acquisition", [](const json &e) { return e["acquired"] == false; }), "EDEADLK");
	CHECK(fail["ret"] == -EDEADLK);
	CHECK(fail["op"] == "pthread_mutex_lock");
	json emh = one(select(em, "acquisition", [](const json &e) { return e["acquired"] == true; }), "EM's hold");
	CHECK_NEAR(i(emh, "hold_ns"), truth["errcheck_hold_ns"], MS);
	json emt = total(EM, "mutex");
	CHECK(emt["acquisitions"] == 1);
	CHECK(emt["failed"] == 1);
	CHECK(emt["releases"] == 1);
	// the recursive mutex taken twice: one hold, from the first lock to the last unlock
	CHECK(truth["recursive_again_ret"] == 0);
	json rmh = one(select(recs, "acquisition", [&](const json &e) { return e["lock_addr"] == RM; }), "RM's hold");
	CHECK(rmh["acquired"] == true);
	CHECK_NEAR(i(rmh, "hold_ns"), truth["recursive_hold_ns"], MS);
	json rmt = total(RM, "mutex");
	CHECK(rmt["acquisitions"] == 2);
	CHECK(rmt["releases"] == 1);
	CHECK(no_lost(recs));
}

TEST_CASE("lock: two uprobe hits per uncontended lock/unlock pair: no return probe on the blocking functions")
{
	REQUIRE_ROOT_OR_SKIP();
	check_hits(false);
}

TEST_CASE("lock: lock_return puts return probes on the blocking functions: three hits per pair")
{
	REQUIRE_ROOT_OR_SKIP();
	check_hits(true);
}

TEST_CASE("lock: uprobe_place entry keeps every probe at its function's first instruction")
{
	REQUIRE_ROOT_OR_SKIP();
	check_hits(false, true);
}

TEST_CASE("lock: one perf-event uprobe per place (kernels before uprobe_multi) measures the same")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto p = pipeline(d, R"({"acquisitions": true, "uprobe_attach": "single"})");
	auto r = t::run({t::procimage_bin(), "-q", "--pipeline", p, "--", t::build_dir() + "/wl-lock", d.file("log")});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto truth = t::read_kv(d.file("log"));
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	auto by = [&](long tid, const char *op) {
		return one(select(recs, "acquisition",
				  [&](const json &e) {
					  return e["tid"] == tid && e["op"] == op && e["lock_addr"] == truth["mutex_addr"];
				  }),
			   op);
	};
	CHECK_NEAR(i(by(truth["a_tid"], "pthread_mutex_lock"), "hold_ns"), truth["a_hold_ns"], MS);
	CHECK(by(truth["b_tid"], "pthread_mutex_trylock")["ret"] == -EBUSY);
	json y = one(select(recs, "acquisition", [&](const json &e) { return e["tid"] == truth["y_tid"]; }), "Y's spin");
	CHECK_NEAR(i(y, "wait_ns"), truth["y_wait_ns"], MS);
}

TEST_CASE("lock: -- CMD follows a forked child through its exec")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto p = pipeline(d, R"({"acquisitions": true})");
	// The shell forks wl-lock (a second command follows it), which then execs. The probe
	// attaches to a new process when it hears of it, a few milliseconds after the fork: the
	// workload starts its schedule 100 ms later.
	auto r = t::run({t::procimage_bin(), "-q", "--pipeline", p, "--", "/bin/sh", "-c",
			 t::quote(t::build_dir() + "/wl-lock") + " " + d.file("log") + "; true"},
			{{"WL_LOCK_DELAY_MS", "100"}});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto truth = t::read_kv(d.file("log"));
	REQUIRE(truth.count("done"));
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	json a = one(select(recs, "acquisition",
			    [&](const json &e) { return e["tid"] == truth["a_tid"] && e["op"] == "pthread_mutex_lock"; }),
		     "A's hold in the forked child");
	CHECK(a["pid"] == truth["pid"]);
	CHECK_NEAR(i(a, "hold_ns"), truth["a_hold_ns"], MS);
	CHECK(select(recs, "contention", [&](const json &e) { return e["holder_tid"] == truth["a_tid"]; }).size() == 2);
}

TEST_CASE("lock: a target that forks many short-lived children: no errors, links released as they end")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto p = pipeline(d, "{}");
	// A burst of 200 children that run /bin/true: many are gone before the host has attached
	// their uprobes (each attach takes the kernel milliseconds), which is no error. Then 100
	// more, paced so that the host keeps up: the uprobes of those that ended are released at
	// the next tick, so the host's descriptors do not grow with every child.
	t::temp_dir w;
	std::string script = "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done; "
			     "while [ $i -lt 300 ]; do /bin/true; sleep 0.02; i=$((i+1)); done; sleep 1; "
			     "ls /proc/$PPID/fd | wc -l > " + w.file("fds_end") + "; true";
	auto r = t::run({t::procimage_bin(), "--pipeline", p, "--interval", "200", "--", "/bin/sh", "-c", script});
	INFO(r.err);
	REQUIRE(r.status == 0);
	CHECK(r.err.find("cannot attach") == std::string::npos);
	CHECK(r.err.find("error:") == std::string::npos);
	CHECK(r.err.find(" 0 decode errors") != std::string::npos);
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	auto sums = t::select_records(recs, "procimage", "summary");
	REQUIRE(sums.size() == 1);
	CHECK(sums[0]["errors"] == 0);
	// the host's descriptors once the children have ended: its own ~50, not two per child
	std::ifstream in(w.file("fds_end"));
	int fds = 0;
	REQUIRE(in >> fds);
	CHECK(fds < 150);
}

TEST_CASE("lock: -p TID on a running process reports that thread only")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	held wl({t::build_dir() + "/wl-lock", d.file("log"), d.file("go")}, d.file("go"));
	// the workload writes its pid before it waits for the FIFO
	for (int n = 0; n < 200 && !t::read_kv(d.file("log")).count("spin_addr"); n++)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	auto p = pipeline(d, R"({"acquisitions": true})", R"({"tid": )" + std::to_string(wl.pid) + "}");
	const pid_t pid = wl.pid;
	tool tl({"--pipeline", p}, d.file("err"));
	REQUIRE(tl.ready());
	wl.go();
	REQUIRE(wl.wait() == 0);
	CHECK(tl.stop() == 0); // (stopping drains every record the kernel holds)
	auto truth = t::read_kv(d.file("log"));
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	auto acqs = select(recs, "acquisition");
	for (const auto &rec : acqs) {
		INFO(rec.dump());
		CHECK(rec["tid"] == pid); // none of the other threads
	}
	auto find = [&](long addr) {
		return one(select(acqs, "acquisition",
				  [&](const json &e) { return e["lock_addr"] == addr && e["op"] == "pthread_mutex_lock"; }),
			   "main thread's hold");
	};
	json outer = find(truth["mutex_addr"]), inner = find(truth["mutex2_addr"]);
	CHECK_NEAR(i(outer, "hold_ns"), truth["outer_hold_ns"], MS);
	CHECK_NEAR(i(inner, "hold_ns"), truth["inner_hold_ns"], MS);
	CHECK(inner["depth"] == 2);
	CHECK(select(recs, "thread", [&](const json &e) { return e["tid"] != pid; }).empty());
}

TEST_CASE("lock: uprobes go into the target process only and leave with the probe")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	held target({"/bin/sleep", "30"}, d.file("unused1"));
	held decoy({"/bin/sleep", "30"}, d.file("unused2"));
	std::this_thread::sleep_for(std::chrono::milliseconds(100)); // both have mapped libc
	// pthread_mutex_trylock is probed at its entry; pthread_mutex_lock where placement.hpp says
	void *fn = libc_fn("pthread_mutex_trylock");
	void *lk = static_cast<char *>(libc_fn("pthread_mutex_lock")) + placed(libc_fn("pthread_mutex_lock"));
	int before = libc_byte(target.pid, fn), lk_before = libc_byte(target.pid, lk);
	REQUIRE(before >= 0);
	REQUIRE(before != 0xcc);
	REQUIRE(lk_before >= 0);
	REQUIRE(lk_before != 0xcc);
	tool tl({"-l", "-P", std::to_string(target.pid), "-o", "jsonl:" + d.file("out.jsonl")}, d.file("err"));
	REQUIRE(tl.ready());
	CHECK(libc_byte(target.pid, fn) == 0xcc); // a breakpoint at pthread_mutex_trylock
	CHECK(libc_byte(target.pid, lk) == 0xcc); // and in pthread_mutex_lock
	CHECK(libc_byte(decoy.pid, fn) == before); // not in any other process
	CHECK(libc_byte(decoy.pid, lk) == lk_before);
	CHECK(libc_byte(getpid(), fn) == before);
	CHECK(tl.stop() == 0);
	CHECK(libc_byte(target.pid, fn) == before); // removed at detach
	CHECK(libc_byte(target.pid, lk) == lk_before);
}

TEST_CASE("lock: contention-only mode reports futex waits, waiters and wakers without uprobes")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto p = pipeline(d, R"({"mode": "contention", "contention_min_us": 1000})");
	auto r = t::run({t::procimage_bin(), "-q", "--pipeline", p, "--", t::build_dir() + "/wl-lock", d.file("log")});
	INFO(r.err);
	REQUIRE(r.status == 0);
	auto truth = t::read_kv(d.file("log"));
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	const long M = truth["mutex_addr"], A = truth["a_tid"], B = truth["b_tid"];
	CHECK(select(recs, "acquisition").empty());
	CHECK(select(recs, "lock").empty());
	CHECK(select(recs, "thread").empty());
	// B's two waits on M: the timed one and the one A ends by waking B
	auto bc = select(recs, "contention", [&](const json &e) { return e["tid"] == B && e["futex_addr"] == M; });
	REQUIRE(bc.size() == 2);
	json cl = one(select(bc, "contention", [](const json &e) { return e["ret"] == 0; }), "B's lock wait");
	CHECK(cl["waker_tid"] == A);
	CHECK(cl["holder_tid"] == 0); // no hold tracking in this mode
	CHECK(cl["lock_addr"] == 0);
	CHECK_NEAR(i(cl, "wait_ns"), truth["b_lock_wait_ns"], MS);
	json ct = one(select(bc, "contention", [](const json &e) { return e["ret"] == -ETIMEDOUT; }), "B's timed wait");
	CHECK_NEAR(i(ct, "wait_ns"), truth["b_timedlock_wait_ns"], MS);
	// the rwlock's writer waited on futex words inside the rwlock (glibc may use two of them);
	// its other long wait, at the barrier before, is on the barrier's word
	auto wc = select(recs, "contention", [&](const json &e) {
		return e["tid"] == truth["w_tid"] && e["futex_addr"] >= truth["rwlock_addr"] &&
		       e["futex_addr"] < truth["rwlock_addr"] + 56; // sizeof(pthread_rwlock_t)
	});
	REQUIRE(!wc.empty());
	int64_t wsum = 0;
	for (const auto &c : wc)
		wsum += i(c, "wait_ns");
	CHECK(wsum <= truth["w_wait_ns"]);
	json fm = one(select(recs, "futex", [&](const json &e) { return e["window"] == "total" && e["futex_addr"] == M; }),
		      "M's futex word");
	CHECK(fm["waits"] == 2);
	CHECK(fm["timeouts"] == 1);
	CHECK(fm["waiter_tids"] == json::array({B}));
	CHECK(std::find(fm["waker_tids"].begin(), fm["waker_tids"].end(), json(A)) != fm["waker_tids"].end());
	json st = one(select(recs, "futex_summary", [](const json &e) { return e["window"] == "total" && e["scope"] == "target"; }),
		      "target summary");
	CHECK(st["mode"] == "contention");
	CHECK(no_lost(recs));
}

TEST_CASE("lock: a whole-system target runs contention-only; mode full refuses it")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	tool tl({"-l", "-o", "jsonl:" + d.file("out.jsonl")}, d.file("err"));
	REQUIRE(tl.ready());
	CHECK_THAT(t::read_file(d.file("err")), Catch::Contains("contention-only"));
	auto r = t::run({t::build_dir() + "/wl-lock", d.file("log")});
	REQUIRE(r.status == 0);
	CHECK(tl.stop() == 0); // (stopping drains every record the kernel holds)
	auto truth = t::read_kv(d.file("log"));
	auto recs = t::read_jsonl(d.file("out.jsonl"));
	CHECK(select(recs, "acquisition").empty());
	CHECK(select(recs, "lock").empty());
	auto bc = select(recs, "contention", [&](const json &e) {
		return e["tid"] == truth["b_tid"] && e["futex_addr"] == truth["mutex_addr"] && e["ret"] == 0;
	});
	REQUIRE(bc.size() == 1);
	CHECK(bc[0]["waker_tid"] == truth["a_tid"]);

	auto p = pipeline(d, R"({"mode": "full"})", R"({"all": true})");
	auto bad = t::run({t::procimage_bin(), "--pipeline", p});
	CHECK(bad.status != 0);
	CHECK_THAT(bad.err, Catch::Contains("mode \"full\" needs a target process"));
}

TEST_CASE("lock: a statically linked target gets a clear message")
{
	REQUIRE_ROOT_OR_SKIP();
	t::temp_dir d;
	auto cc = t::sh("cc -static -O1 -pthread -o " + d.file("static-lock") + " " +
			t::quote(t::source_dir() + "/tests/workloads/wl_lock.c") + " 2>&1");
	if (cc.status != 0) {
		WARN("skipped: cannot link a static program here: " << cc.out);
		return;
	}
	held wl({d.file("static-lock"), d.file("log"), d.file("go")}, d.file("go"));
	for (int n = 0; n < 200 && !t::read_kv(d.file("log")).count("spin_addr"); n++)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	auto r = t::run({t::procimage_bin(), "-l", "-P", std::to_string(wl.pid), "-o", "jsonl:" + d.file("out.jsonl")});
	CHECK(r.status != 0);
	CHECK_THAT(r.err, Catch::Contains("statically linked"));
	CHECK_THAT(r.err, Catch::Contains("\"contention\""));
}
