// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the tests: running commands, temporary folders, reading JSON lines.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace procimage::test {

struct run_result {
	int status = -1; // exit status, or 128 + signal
	std::string out;
	std::string err;
};

// Run argv (no shell) with extra environment entries, capturing stdout and stderr.
run_result run(const std::vector<std::string> &argv, const std::map<std::string, std::string> &env = {});
// Same through /bin/sh -c.
run_result sh(const std::string &cmd);
// A word for a shell command line: the checkout may live in a path with spaces or quotes.
std::string quote(const std::string &word);

bool is_root();
// Records that a test case skipped (SKIP_TEST); the runner's exit status says so.
void note_skipped(const std::string &test_case);
const std::vector<std::string> &skipped_cases();
std::string build_dir();  // where procimage and plugins/ are
std::string source_dir();
std::string procimage_bin();

// A fresh folder under /tmp, removed at destruction.
class temp_dir {
public:
	temp_dir();
	~temp_dir();
	const std::string &path() const { return path_; }
	std::string file(const std::string &name) const { return path_ + "/" + name; }

private:
	std::string path_;
};

// procimage, procimage-ctl and the plugins copied into DIR/bin, all world-readable, so an
// unprivileged user (uid 65534) can run them wherever the checkout is (a 0700 folder, /root).
// Returns DIR/bin.
std::string world_readable_build(const temp_dir &dir);

std::string read_file(const std::string &path);
// A port on loopback that was free a moment ago.
int free_port();
struct http_reply {
	int status = 0; // 0: no connection or no reply
	std::string headers, body;
};
// A minimal HTTP/1.0 GET on loopback (the server closes the connection after the reply).
http_reply http_get(int port, const std::string &target, const std::string &accept = "");

// The joined record schema of the build's probes (procimage --print-schema), read once.
const std::string &record_schema();
void write_file(const std::string &path, const std::string &text);
// Every record read is also kept (a sample of each type) for check_records_against_schema().
// schema_check false: records of a plugin the built tree does not have (a test validates them
// against its own schema).
std::vector<nlohmann::json> read_jsonl(const std::string &path, bool schema_check = true);
// Validate the records the tests read against `procimage --print-schema`
// (tests/tools/validate_records.py, python3-jsonschema): 0 when all do, else 1 (printed).
int check_records_against_schema();
// Poll a JSON-lines file that a running procimage writes (a last line still being written is
// left for the next look) until some record satisfies pred, or timeout_ms passes. Returns
// whether one did: tests wait on the condition itself, never for a fixed time.
bool wait_for_record(const std::string &path, const std::function<bool(const nlohmann::json &)> &pred,
		     int timeout_ms = 10000);
// The records of one probe and event (and matching pred, when given).
std::vector<nlohmann::json> select_records(const std::vector<nlohmann::json> &recs, const std::string &probe,
					   const std::string &event,
					   const std::function<bool(const nlohmann::json &)> &pred = nullptr);
// key=value lines (the demo workload's log)
std::map<std::string, long> read_kv(const std::string &path);

} // namespace procimage::test

// A test case that cannot run here says why and ends as skipped (Catch2 v2 has no SKIP): the
// case returns, and once Catch has run, the process exits with PROCIMAGE_TEST_SKIP_CODE unless
// a case failed (tests/main.cpp). ctest runs each case in its own process and reports that
// status as skipped (SKIP_RETURN_CODE, tests/CMakeLists.txt). Use it at the top of a case,
// before anything the case would have to undo.
#define SKIP_TEST(why)                                                                           \
	do {                                                                                     \
		WARN("skipped: " << why);                                                        \
		procimage::test::note_skipped(Catch::getResultCapture().getCurrentTestName());   \
		return;                                                                          \
	} while (0)

// Root-only tests say why they skip; CI runs them as root.
#define REQUIRE_ROOT_OR_SKIP()                                                                   \
	do {                                                                                     \
		if (!procimage::test::is_root())                                                 \
			SKIP_TEST("needs root (loads BPF programs); CI runs it as root");        \
	} while (0)
