// SPDX-License-Identifier: Apache-2.0
//
// The report model: one process's life (and its threads') beside the whole system, built
// from records in the order they arrive, live or read back from a JSON-lines file.
// A figure the run did not collect is an empty optional: it renders as "not collected".
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace procimage::report {

using opt_u64 = std::optional<uint64_t>;

struct latency {
	opt_u64 count, sum_ns, max_ns, errors;
	std::vector<uint64_t> hist_ns; // log2 slots
	std::optional<double> mean_ns() const
	{
		if (!count || !sum_ns || *count == 0)
			return std::nullopt;
		return double(*sum_ns) / double(*count);
	}
};

struct lock_figures {
	opt_u64 acquisitions, contended, wait_ns, wait_max_ns, hold_ns, hold_max_ns;
};

struct slice {
	uint64_t start_ns, dur_ns; // from run start
	std::string name;          // "on-CPU", off-CPU reason, "lock wait", syscall name
	std::string cat;           // oncpu | offcpu | lock | syscall
};

struct instant {
	uint64_t ts_ns; // from run start
	std::string name; // fork, vfork, thread, exec, exec failed, exit, signal
	std::string detail;
	uint32_t other = 0; // the child pid of a fork
};

struct sample {
	uint64_t ts_ns;
	std::optional<double> cpu_pct;
	opt_u64 rss_bytes, read_bytes, write_bytes;
};

struct thread_model {
	uint32_t tid = 0;
	std::string comm;
	uint64_t first_ns = 0, last_ns = 0; // from run start
	std::optional<uint64_t> ended_ns;
	opt_u64 oncpu_ns;
	std::map<std::string, uint64_t> offcpu_ns; // by reason
	std::vector<slice> slices;
	latency sched;
};

struct ending {
	std::optional<int64_t> code, signal;
	bool core = false;
};

struct process_model {
	uint32_t pid = 0;
	uint64_t start_ns = 0; // the kernel's process start time (pid + start identify it)
	std::string comm;
	std::vector<std::string> execs;          // filenames, in order
	std::vector<std::string> failed_execs;   // "filename (errno)"
	uint32_t ppid = 0;
	std::string created_by;                  // fork | vfork | clone | unknown
	std::vector<size_t> children;            // indexes into model::processes
	std::optional<size_t> parent;
	uint64_t first_ns = 0, last_ns = 0;      // from run start
	opt_u64 lifetime_ns;
	std::optional<ending> ended;
	opt_u64 user_ns, system_ns, cpu_ns, rss_peak_bytes, read_bytes, write_bytes;
	latency sched;
	std::map<std::string, latency> syscalls;
	latency syscall_total;
	std::map<std::string, lock_figures> locks; // "type name"
	std::map<uint32_t, thread_model> threads;
	std::vector<instant> instants;
	std::vector<sample> samples;
	std::string cgroup; // its v2 cgroup as last seen ("" when no record named one)
	std::optional<double> cpu_share() const;
};

// The processes of one cgroup together (the report groups by the records' cgroup).
struct cgroup_figures {
	std::string cgroup; // "" for processes no record named a cgroup for
	uint64_t processes = 0;
	opt_u64 cpu_ns, syscalls, syscall_errors, sched_delay_ns, lock_wait_ns;
};

// One distinct stack of the profile probe over the whole run: "comm;outermost;…;leaf" as the
// folded sink writes it (kernel frames after the user ones, marked "_[k]"), and its samples.
struct stack_figures {
	std::string folded;
	uint64_t samples = 0;
};

struct system_model {
	latency sched;
	std::map<std::string, latency> syscalls;
	latency syscall_total;
	opt_u64 mem_used_peak_bytes;
	std::vector<sample> samples;
};

struct model {
	uint64_t t0_ns = 0, end_ns = 0; // boot-time ns of the first and last record
	unsigned ncpu = 1;
	std::vector<process_model> processes;
	system_model system;
	std::map<std::string, uint64_t> stacks; // folded stack -> samples (profile)
	uint64_t stack_samples = 0;             // every sample, those past the cap of stacks included
	std::map<std::string, bool> collected;  // probe -> seen
	std::map<std::string, uint64_t> lost;   // probe -> records lost
	uint64_t records = 0, unreadable = 0;
	uint64_t duration_ns() const { return end_ns > t0_ns ? end_ns - t0_ns : 0; }
	bool has(const std::string &probe) const { return collected.count(probe) != 0; }
};

// Builds a model from records, one at a time.
class builder {
public:
	explicit builder(size_t max_slices = 20000) : max_slices_(max_slices) {}
	void add(const nlohmann::json &record);
	void add_line(const std::string &line); // a record, or a line of collapsed stacks; unreadable lines are counted
	bool add_folded(const std::string &line);
	void add_stack(std::string folded, uint64_t samples);
	model finish();

private:
	process_model &process(const nlohmann::json &r);
	process_model &process(uint32_t pid, uint64_t start, uint64_t now);
	thread_model &thread(process_model &p, uint32_t tid, const std::string &comm, uint64_t now);
	void add_slice(thread_model &t, slice s);
	uint64_t rel(uint64_t ts) const { return ts > m_.t0_ns ? ts - m_.t0_ns : 0; }

	model m_;
	std::map<uint32_t, size_t> live_;               // pid -> current process index
	std::map<std::pair<uint32_t, uint64_t>, size_t> by_start_;
	std::map<uint32_t, uint32_t> pending_parent_;   // child pid -> parent pid (fork seen first)
	size_t max_slices_, slices_ = 0;
	static constexpr size_t max_stacks = 20000; // distinct stacks kept; the rest summed as one
	uint64_t dropped_slices_ = 0;
};

model read_jsonl(std::istream &in);

// The processes grouped by cgroup, the most CPU first (processes without one last).
std::vector<cgroup_figures> by_cgroup(const model &m);
// The n stacks with the most samples.
std::vector<stack_figures> top_stacks(const model &m, size_t n);

std::string render_text(const model &m, bool brief = false);
nlohmann::json render_json(const model &m);
std::string render_chrome_trace(const model &m);
std::string render_html(const model &m);

// the format named by an output file's extension (text when none fits)
std::string format_from_path(const std::string &path);
bool known_format(const std::string &format);
std::string render(const model &m, const std::string &format);

// "procimage report ..." (argv[0] is "report"): throws std::invalid_argument on bad input.
int report_main(int argc, char **argv);
// the same, exceptions turned into a message and exit status (2 bad input, 1 run-time)
int report_command(int argc, char **argv);

} // namespace procimage::report
