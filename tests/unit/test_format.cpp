// SPDX-License-Identifier: Apache-2.0
// Each sink's exact output for given records.
#include "format.hpp"
#include "plugin_loader.hpp"
#include "support.hpp"

#include <procimage/sdk.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <fcntl.h>
#include <span>
#include <sstream>
#include <unistd.h>

using namespace procimage;
namespace t = procimage::test;

namespace {

pi_host fake_host()
{
	pi_host h{};
	h.size = sizeof h;
	h.api_major = PI_API_MAJOR;
	h.api_minor = PI_API_MINOR;
	h.control_map_fd = h.targets_map_fd = -1;
	return h;
}

// 2026-11-25 20:45:01.123456789 UTC
constexpr uint64_t TS = 1795639501123456789ULL;

sdk::record exec_record()
{
	sdk::record r("keytime", "exec");
	r.ts(TS).ids(4242, 4243).cpu(1).comm("bash").pid_start(777);
	r.str("filename", "/bin/ls")
		.strv("argv", {"ls", "-l", "a b", "say \"hi\", ok"})
		.boolean("argv_truncated", false)
		.i64("ret", -2, PI_FMT_ERRNO)
		.u64("dur_ns", 1500, PI_FMT_DURATION_NS)
		.u64("signal", 9, PI_FMT_SIGNAL)
		.u64("clone_flags", 0x4100, PI_FMT_HEX)
		.u64("bytes", 3 * 1048576, PI_FMT_BYTES)
		.f64("cpu_pct", 12.5, PI_FMT_PERCENT);
	return r;
}

struct loaded_sink {
	core::plugin_ptr plugin;
	void *inst = nullptr;
	pi_host host = fake_host();

	loaded_sink(const std::string &name, const std::string &cfg, const char *record_schema = nullptr)
	{
		host.record_schema = record_schema;
		auto p = core::load_plugin(t::build_dir() + "/plugins/sink_" + name + ".so");
		REQUIRE(p.ok());
		plugin = *p;
		char err[PI_ERRBUF_SIZE] = "";
		inst = plugin->desc->sink->create(&host, cfg.c_str(), err, sizeof err);
		INFO(err);
		REQUIRE(inst);
	}
	~loaded_sink()
	{
		if (inst)
			plugin->desc->sink->destroy(inst);
	}
	void write(sdk::record &r) { REQUIRE(plugin->desc->sink->write(inst, &r.view()) == PI_OK); }
	// as the host hands it on: with the cgroup it named
	void write(sdk::record &r, const char *cgroup)
	{
		pi_record v = r.view();
		v.cgroup = cgroup;
		REQUIRE(plugin->desc->sink->write(inst, &v) == PI_OK);
	}
	void flush() { REQUIRE(plugin->desc->sink->flush(inst) == PI_OK); }
};

// Run f with stdout redirected to a file; return what it printed.
template <typename F> std::string capture_stdout(F f)
{
	t::temp_dir d;
	std::fflush(stdout);
	int saved = dup(1);
	int fd = open(d.file("out").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
	dup2(fd, 1);
	close(fd);
	f();
	std::fflush(stdout);
	dup2(saved, 1);
	close(saved);
	return t::read_file(d.file("out"));
}

} // namespace

TEST_CASE("values are shown in human units")
{
	using namespace procimage::sinks;
	CHECK(human_duration(850) == "850ns");
	CHECK(human_duration(1500) == "1.500µs");
	CHECK(human_duration(4560000) == "4.560ms");
	CHECK(human_duration(20000000) == "20.00ms");
	CHECK(human_duration(1234000000) == "1.234s");
	CHECK(human_bytes(512) == "512B");
	CHECK(human_bytes(3 * 1048576) == "3.000MiB");
	CHECK(errno_name(-2) == "-ENOENT");
	CHECK(errno_name(-16) == "-EBUSY");
	CHECK(errno_name(0) == "0");
	CHECK(signal_name(9) == "SIGKILL");
	CHECK(signal_name(11) == "SIGSEGV");
	CHECK(signal_name(0) == "none");
	CHECK(clock_time(TS, true) == "20:45:01.123456");
	CHECK(csv_cell("plain") == "plain");
	CHECK(csv_cell("a,b") == "\"a,b\"");
	CHECK(csv_cell("say \"hi\"") == "\"say \"\"hi\"\"\"");
	CHECK(csv_cell("two\nlines") == "\"two\nlines\"");
}

TEST_CASE("stdout sink: one aligned line per record with readable values")
{
	auto out = capture_stdout([] {
		loaded_sink s("stdout", R"({"time": "utc"})");
		auto r = exec_record();
		s.write(r);
		s.flush();
	});
	CHECK(out ==
	      "TIME                PID     TID COMM             PROBE    EVENT       DETAILS\n"
	      "20:45:01.123456    4242    4243 bash             keytime  exec        filename=/bin/ls "
	      "argv=[ls -l \"a b\" \"say \\\"hi\\\", ok\"] argv_truncated=no ret=-ENOENT dur_ns=1.500µs "
	      "signal=SIGKILL clone_flags=0x4100 bytes=3.000MiB cpu_pct=12.5%\n");
}

TEST_CASE("jsonl sink: one JSON object per line, raw values, units in the keys")
{
	t::temp_dir d;
	{
		loaded_sink s("jsonl", "{\"path\": \"" + d.file("out.jsonl") + "\"}");
		auto r = exec_record();
		s.write(r);
		s.write(r, "/user.slice/\"q\"");
		s.flush();
	}
	std::string text = t::read_file(d.file("out.jsonl"));
	std::string head =
		R"({"ts_ns":1795639501123456789,"probe":"keytime","event":"exec","pid":4242,"tid":4243,"comm":"bash",)"
		R"("cpu":1,"pid_start_ns":777)";
	std::string fields =
		R"(,"filename":"/bin/ls","argv":["ls","-l","a b","say \"hi\", ok"],)"
		R"("argv_truncated":false,"ret":-2,"dur_ns":1500,"signal":9,"clone_flags":16640,"bytes":3145728,)"
		R"("cpu_pct":12.5})";
	// the cgroup the host named, after the process's start, escaped like any string
	CHECK(text == head + fields + "\n" + head + R"(,"cgroup":"/user.slice/\"q\"")" + fields + "\n");
	// and jq reads it
	auto r = t::sh("jq -c '.argv[3]' " + d.file("out.jsonl"));
	CHECK(r.status == 0);
	CHECK(r.out == "\"say \\\"hi\\\", ok\"\n\"say \\\"hi\\\", ok\"\n");
}

TEST_CASE("csv sink without a record schema: RFC 4180, one file per record type, header from the first record")
{
	t::temp_dir d;
	{
		loaded_sink s("csv", "{\"dir\": \"" + d.file("csv") + "\"}");
		auto r = exec_record();
		s.write(r);
		sdk::record other("keytime", "exec");
		other.ts(TS).ids(1, 1).comm("x,y").str("filename", "/a").u64("late_field", 5);
		s.write(other);
		sdk::record exit_rec("keytime", "exit");
		exit_rec.ts(TS).ids(1, 2).comm("z").u64("exit_code", 3);
		s.write(exit_rec, "/system.slice/a,b.service");
		s.flush();
	}
	CHECK(t::read_file(d.file("csv/keytime_exec.csv")) ==
	      "ts_ns,probe,plugin,event,pid,tid,comm,cpu,pid_start_ns,cgroup,filename,argv,argv_truncated,ret,dur_ns,"
	      "signal,clone_flags,bytes,cpu_pct,extra\r\n"
	      "1795639501123456789,keytime,,exec,4242,4243,bash,1,777,,/bin/ls,\"ls -l a b say \"\"hi\"\", ok\",false,-2,"
	      "1500,9,16640,3145728,12.5,\r\n"
	      "1795639501123456789,keytime,,exec,1,1,\"x,y\",,,,/a,,,,,,,,,late_field=5\r\n");
	CHECK(t::read_file(d.file("csv/keytime_exit.csv")) ==
	      "ts_ns,probe,plugin,event,pid,tid,comm,cpu,pid_start_ns,cgroup,exit_code,extra\r\n"
	      "1795639501123456789,keytime,,exit,1,2,z,,,\"/system.slice/a,b.service\",3,\r\n");
}

TEST_CASE("csv sink with a record schema: the columns are the schema's properties, whatever the first record has")
{
	t::temp_dir d;
	const char *schema = R"({"$defs": {
		"keytime.exit": {"properties": {"ts_ns": {}, "probe": {}, "plugin": {}, "event": {}, "pid": {}, "tid": {},
			"comm": {}, "cpu": {}, "pid_start_ns": {}, "exit_code": {}, "signal": {}, "ppid": {}}},
		"other.*": {"x-undeclared": true, "properties": {"ts_ns": {}}}}})";
	{
		loaded_sink s("csv", "{\"dir\": \"" + d.file("csv") + "\"}", schema);
		// the first record lacks signal; a later one has it (and ppid): nothing is lost
		sdk::record a("keytime", "exit");
		a.ts(TS).ids(7, 8).comm("a").pid_start(99).u64("exit_code", 3);
		s.write(a);
		sdk::record b("keytime", "exit");
		b.ts(TS).ids(7, 7).comm("b").pid_start(99).u64("ppid", 1).u64("signal", 9).u64("exit_code", 0);
		s.write(b);
		s.flush();
	}
	CHECK(t::read_file(d.file("csv/keytime_exit.csv")) ==
	      "ts_ns,probe,plugin,event,pid,tid,comm,cpu,pid_start_ns,exit_code,signal,ppid\r\n"
	      "1795639501123456789,keytime,,exit,7,8,a,,99,3,,\r\n"
	      "1795639501123456789,keytime,,exit,7,7,b,,99,0,9,1\r\n");
}

TEST_CASE("jsonl sink: control characters escaped, invalid UTF-8 replaced, valid UTF-8 kept")
{
	sdk::record r("keytime", "exec");
	// a C0 control, a lone continuation byte, an overlong '/', a UTF-16 surrogate, valid é and €
	r.ts(TS).ids(1, 1).comm("a\x01" "b").str("filename", "\x80/\xc0\xaf/\xed\xa0\x80/\xc3\xa9\xe2\x82\xac");
	std::string line = procimage::sinks::record_json(r.view());
	CHECK_THAT(line, Catch::Contains(R"("comm":"a\u0001b")"));
	CHECK_THAT(line, Catch::Contains("\"filename\":\"\xef\xbf\xbd/\xef\xbf\xbd\xef\xbf\xbd/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd/\xc3\xa9\xe2\x82\xac\""));
	// and it parses
	auto j = nlohmann::json::parse(line);
	CHECK(j["comm"] == "a\x01" "b");
}

TEST_CASE("sdk::record: started again with reset(), a record holds only its new fields, each intact")
{
	sdk::record r("first", "one");
	std::vector<std::string> long_names;
	for (int i = 0; i < 40; i++)
		long_names.push_back("a name longer than the small-string buffer, number " + std::to_string(i));
	r.ts(TS).ids(1, 2).comm("c1").str("s", "v1").strv("names", long_names).u64v("nums", {1, 2, 3});
	std::string one = sinks::record_json(r.view());
	CHECK_THAT(one, Catch::Contains(R"("nums":[1,2,3])"));
	CHECK_THAT(one, Catch::Contains(R"(,"a name longer than the small-string buffer, number 39"],)"));

	// a smaller record in the same object: nothing of the first is left
	std::vector<std::string_view> views = {"x", "y"};
	std::vector<uint64_t> nums = {7};
	r.reset("second", "two").ts(TS).ids(3, 4).comm("c2");
	r.strv("v", std::span<const std::string_view>(views)).u64v("n", nums).str("t", static_cast<const char *>(nullptr));
	CHECK(sinks::record_json(r.view()) ==
	      R"({"ts_ns":1795639501123456789,"probe":"second","event":"two","pid":3,"tid":4,"comm":"c2",)"
	      R"("v":["x","y"],"n":[7],"t":""})");
	// and a larger one again: the arenas grow under the fields already added
	r.reset("first", "one").ts(TS).ids(1, 2).comm("c1").str("s", "v1").strv("names", long_names).u64v("nums", {1, 2, 3});
	CHECK(sinks::record_json(r.view()) == one);
	// a moved record keeps its fields
	sdk::record moved = std::move(r);
	CHECK(sinks::record_json(moved.view()) == one);
}

TEST_CASE("jsonl sink: every JSON escape, between runs of plain text")
{
	sdk::record r("p", "e");
	r.ts(1).ids(1, 1).comm("c").str("s", "ab\"cd\\ef\ngh\rij\tkl\x1fmn\x7fop\xc3\xa9q");
	CHECK(sinks::record_json(r.view()) ==
	      "{\"ts_ns\":1,\"probe\":\"p\",\"event\":\"e\",\"pid\":1,\"tid\":1,\"comm\":\"c\","
	      "\"s\":\"ab\\\"cd\\\\ef\\ngh\\rij\\tkl\\u001fmn\x7fop\xc3\xa9q\"}");
}

TEST_CASE("jsonl sink: many records reach the file whole and in order, in large writes")
{
	t::temp_dir d;
	constexpr int N = 5000; // about 1 MB: several of the sink's write chunks
	{
		loaded_sink s("jsonl", "{\"path\": \"" + d.file("out.jsonl") + "\"}");
		sdk::record r("p", "e");
		for (int i = 0; i < N; i++) {
			r.reset("p", "e").ts(TS).ids(1, 1).comm("c").u64("i", static_cast<uint64_t>(i));
			r.str("pad", std::string(150, 'x'));
			s.write(r);
		}
		s.flush();
	}
	std::istringstream lines(t::read_file(d.file("out.jsonl")));
	std::string line;
	int n = 0;
	while (std::getline(lines, line)) {
		auto j = nlohmann::json::parse(line, nullptr, false);
		REQUIRE(!j.is_discarded());
		REQUIRE(j["i"] == n);
		n++;
	}
	CHECK(n == N);
}

TEST_CASE("csv sink: a record with a key twice, and one whose fields come in another order")
{
	t::temp_dir d;
	{
		loaded_sink s("csv", "{\"dir\": \"" + d.file("csv") + "\"}");
		sdk::record a("p", "e");
		a.ts(1).ids(1, 1).comm("c").u64("x", 1).u64("y", 2);
		s.write(a);
		sdk::record b("p", "e");
		b.ts(2).ids(1, 1).comm("c").u64("y", 20).u64("x", 10);
		s.write(b);
		sdk::record c("p", "e");
		c.ts(3).ids(1, 1).comm("c").str("x", "a\"b").u64("y", 3);
		s.write(c);
		sdk::record dup("q", "e");
		dup.ts(4).ids(1, 1).comm("c").u64("k", 1).u64("k", 2);
		s.write(dup);
		s.write(dup);
		s.flush();
	}
	CHECK(t::read_file(d.file("csv/p_e.csv")) ==
	      "ts_ns,probe,plugin,event,pid,tid,comm,cpu,pid_start_ns,cgroup,x,y,extra\r\n"
	      "1,p,,e,1,1,c,,,,1,2,\r\n"
	      "2,p,,e,1,1,c,,,,10,20,\r\n"
	      "3,p,,e,1,1,c,,,,\"a\"\"b\",3,\r\n");
	// the header names the key twice; both values go to its first column, the last one wins
	CHECK(t::read_file(d.file("csv/q_e.csv")) ==
	      "ts_ns,probe,plugin,event,pid,tid,comm,cpu,pid_start_ns,cgroup,k,k,extra\r\n"
	      "4,q,,e,1,1,c,,,,2,,\r\n"
	      "4,q,,e,1,1,c,,,,2,,\r\n");
}
