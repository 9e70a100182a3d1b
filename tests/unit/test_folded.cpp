// SPDX-License-Identifier: Apache-2.0
// The folded sink: collapsed stacks, caller first, summed over records, heaviest first.
#include "folded/folded.hpp"
#include "plugin_loader.hpp"
#include "support.hpp"

#include <procimage/sdk.hpp>

#include <catch2/catch.hpp>

namespace sdk = procimage::sdk;
namespace t = procimage::test;
using procimage::sinks::folded::folded_stack;
using procimage::sinks::folded::frame_function;

namespace {

sdk::record stack_record(const std::string &comm, uint32_t pid, uint64_t samples, const std::vector<std::string> &u,
			 const std::vector<std::string> &k)
{
	sdk::record r("profile", "stack");
	r.ts(1).ids(pid, pid).comm(comm).str("scope", "thread").str("window", "interval").u64("interval_ns", 1000000000).u64("samples", samples).strv("ustack", u).strv("kstack", k);
	return r;
}

struct folded_sink {
	procimage::core::plugin_ptr plugin;
	void *inst = nullptr;
	pi_host host{};

	explicit folded_sink(const std::string &cfg)
	{
		auto p = procimage::core::load_plugin(t::build_dir() + "/plugins/sink_folded.so");
		REQUIRE(p.ok());
		plugin = *p;
		host.size = sizeof host;
		host.api_major = PI_API_MAJOR;
		host.api_minor = PI_API_MINOR;
		host.control_map_fd = host.targets_map_fd = -1;
		char err[PI_ERRBUF_SIZE] = "";
		inst = plugin->desc->sink->create(&host, cfg.c_str(), err, sizeof err);
		INFO(err);
		REQUIRE(inst);
	}
	void write(sdk::record r) { REQUIRE(plugin->desc->sink->write(inst, &r.view()) == PI_OK); }
	void close()
	{
		plugin->desc->sink->destroy(inst);
		inst = nullptr;
	}
	~folded_sink()
	{
		if (inst)
			close();
	}
};

} // namespace

TEST_CASE("folded: frames lose their offsets; bare addresses are [unknown]")
{
	CHECK(frame_function("main+0x1a") == "main");
	CHECK(frame_function("[libc.so.6]+0x2a1b0") == "[libc.so.6]");
	CHECK(frame_function("0x7f12deadbeef") == "[unknown]");
	CHECK(frame_function("operator+(A const&, A const&)+0x10") == "operator+(A const&, A const&)");
	CHECK(frame_function("a;b") == "a_b");
	CHECK(frame_function("x+0xzz") == "x+0xzz");
}

TEST_CASE("folded: the user stack calls into the kernel stack, caller first")
{
	CHECK(folded_stack("app", {"leaf+0x1", "mid+0x2", "main+0x3"}, {"k_leaf+0x4", "entry_SYSCALL_64+0x5"}) ==
	      "app;main;mid;leaf;entry_SYSCALL_64;k_leaf");
	CHECK(folded_stack("app", {"leaf+0x1"}, {"k+0x4"}, "_[k]") == "app;leaf;k_[k]");
	CHECK(folded_stack("kworker/0:1", {}, {"worker_thread+0x1"}) == "kworker/0:1;worker_thread");
	CHECK(folded_stack("app", {"munmap+0x1", "0x10", "0x20", "0x30"}, {}) == "app;[unknown];munmap");
}

TEST_CASE("folded sink: samples summed per command and stack over the run, heaviest first")
{
	t::temp_dir d;
	std::string path = d.file("out.folded");
	{
		folded_sink s(R"({"path": ")" + path + R"("})");
		s.write(stack_record("app", 10, 5, {"f+0x1", "main+0x2"}, {}));
		s.write(stack_record("app", 10, 7, {"g+0x9", "main+0x2"}, {}));
		// the same stack at other offsets and in a later window: one line
		s.write(stack_record("app", 10, 4, {"f+0x7", "main+0x3"}, {}));
		// another process with the same command: merged too (the default groups by command)
		s.write(stack_record("app", 11, 1, {"f+0x1", "main+0x2"}, {}));
		s.write(stack_record("app", 10, 2, {"read+0x4", "main+0x2"}, {"ksys_read+0x8", "entry_SYSCALL_64+0x1"}));
		// not stack records: ignored
		sdk::record other("keytime", "exit");
		other.u64("exit_code", 0);
		s.write(std::move(other));
		s.close();
	}
	CHECK(t::read_file(path) == "app;main;f 10\n"
				    "app;main;g 7\n"
				    "app;main;read;entry_SYSCALL_64;ksys_read 2\n");
}

TEST_CASE("folded sink: pid in the first frame, kernel frames left out, on request")
{
	t::temp_dir d;
	std::string path = d.file("out.folded");
	{
		folded_sink s(R"({"path": ")" + path + R"(", "pid": true, "kernel": false})");
		s.write(stack_record("app", 10, 3, {"f+0x1", "main+0x2"}, {"k+0x1"}));
		s.write(stack_record("app", 11, 1, {"f+0x1", "main+0x2"}, {}));
		s.close();
	}
	CHECK(t::read_file(path) == "app-10;main;f 3\napp-11;main;f 1\n");
}
