// SPDX-License-Identifier: Apache-2.0
// The plugin boundary: version checks and plugins that fail.
#include "host.hpp"
#include "plugin_loader.hpp"
#include "support.hpp"

#include <procimage/kernel_features.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <thread>

using namespace procimage::core;
namespace t = procimage::test;

static std::string test_plugin(const std::string &file) { return std::string(PROCIMAGE_TEST_PLUGIN_DIR) + "/" + file; }

// "M.N" of this build's ABI, and of one with another major
static const std::string ABI = std::to_string(PI_API_MAJOR) + "." + std::to_string(PI_API_MINOR);
static const std::string ABI_MAJOR2 = "2." + std::to_string(PI_API_MINOR);

TEST_CASE("the in-tree plugins load and describe themselves")
{
	for (const auto &[file, kind, name] : std::vector<std::tuple<std::string, uint32_t, std::string>>{
		     {"probe_keytime.so", PI_KIND_PROBE, "keytime"},
		     {"sink_stdout.so", PI_KIND_SINK, "stdout"},
		     {"sink_jsonl.so", PI_KIND_SINK, "jsonl"},
		     {"sink_csv.so", PI_KIND_SINK, "csv"}}) {
		auto p = load_plugin(t::build_dir() + "/plugins/" + file);
		INFO(file);
		REQUIRE(p.ok());
		CHECK((*p)->desc->kind == kind);
		CHECK((*p)->name() == name);
		CHECK((*p)->desc->api_major == PI_API_MAJOR);
		CHECK((*p)->desc->api_minor <= PI_API_MINOR);
	}
}

TEST_CASE("a plugin built for another major ABI is refused, naming plugin and both versions")
{
	auto p = load_plugin(test_plugin("sink_abi_major.so"));
	REQUIRE_FALSE(p.ok());
	CHECK(p.err().msg == "plugin 'abi_major' 0.0.1 (" + test_plugin("sink_abi_major.so") +
				     ") was built for plugin ABI " + ABI_MAJOR2 + "; this procimage speaks ABI " + ABI +
				     " (major versions differ): rebuild the plugin against this procimage's plugin_api");
}

TEST_CASE("a plugin needing a newer minor ABI is refused")
{
	auto p = load_plugin(test_plugin("sink_abi_minor.so"));
	REQUIRE_FALSE(p.ok());
	CHECK(p.err().msg == "plugin 'abi_minor' 0.0.1 (" + test_plugin("sink_abi_minor.so") +
				     ") needs plugin ABI 1.99, newer than this procimage's ABI " + ABI +
				     ": upgrade procimage or rebuild the plugin");
}

TEST_CASE("a plugin built for ABI 1.0 still loads in a newer 1.x host")
{
	auto p = load_plugin(test_plugin("sink_abi_old.so"));
	REQUIRE(p.ok());
	CHECK((*p)->desc->api_major == 1);
	CHECK((*p)->desc->api_minor == 0);
	CHECK(PI_API_MINOR >= 1);
}

TEST_CASE("a shared object without the entry point is refused")
{
	auto p = load_plugin(test_plugin("sink_not_plugin.so"));
	REQUIRE_FALSE(p.ok());
	CHECK_THAT(p.err().msg, Catch::Contains("not a procimage plugin (no procimage_plugin_entry symbol"));
	p = load_plugin("/etc/hostname");
	REQUIRE_FALSE(p.ok());
	CHECK(p.err().msg == "plugin /etc/hostname: not an ELF shared object");
}

TEST_CASE("a mismatched plugin named in a pipeline stops it with exit code 2")
{
	t::temp_dir d;
	t::write_file(d.file("p.json"), R"({"version": 1, "probes": {"keytime": {}}, "sinks": {"old": {"plugin": ")" +
						  test_plugin("sink_abi_major.so") + R"("}}})");
	auto r = t::run({t::procimage_bin(), "--pipeline", d.file("p.json"), "--check"});
	CHECK(r.status == 2);
	CHECK_THAT(r.err, Catch::Contains("sinks.old: plugin 'abi_major' 0.0.1"));
	CHECK_THAT(r.err, Catch::Contains("was built for plugin ABI " + ABI_MAJOR2 + "; this procimage speaks ABI " + ABI));
}

TEST_CASE("--list-plugins shows every plugin with its version, and why one is unusable")
{
	auto r = t::run({t::procimage_bin(), "--list-plugins", "--plugin-dir", PROCIMAGE_TEST_PLUGIN_DIR});
	CHECK(r.status == 0);
	CHECK_THAT(r.out, Catch::Contains("probe  keytime      1.0.0     " + ABI));
	CHECK_THAT(r.out, Catch::Contains("sink   jsonl        1.0.0     " + ABI));
	CHECK_THAT(r.out, Catch::Contains("unusable: plugin 'abi_major' 0.0.1"));
	CHECK_THAT(r.out, Catch::Contains("sink_not_plugin.so"));
}

TEST_CASE("sdk: a probe of ABI 1.4 checks the kernel with the BTF its host lends it for create and load, not a parse of its own")
{
	// a parse of the kernel's BTF standing in for the host's
	std::unique_ptr<btf, void (*)(btf *)> hosts{btf__load_vmlinux_btf(), btf__free};
	if (!hosts)
		SKIP_TEST("this kernel has no BTF (/sys/kernel/btf/vmlinux)");
	namespace sdk = procimage::sdk;
	pi_host host{};
	host.kernel_btf = hosts.get();
	{
		// a 1.3 host's pi_host ends before kernel_btf: the pointer is not read
		host.size = offsetof(pi_host, kernel_btf);
		sdk::detail::lent_kernel_btf lent(host);
		CHECK(sdk::vmlinux_btf() != hosts.get());
	}
	{
		host.size = sizeof host;
		sdk::detail::lent_kernel_btf lent(host);
		CHECK(sdk::vmlinux_btf() == hosts.get());
		// and the checks read it
		CHECK(sdk::kernel_has(sdk::KF_RINGBUF));
		CHECK(sdk::missing_for("keytime").empty());
		// the host loads probes on several threads: the loan holds on every one, and a
		// second load that ends first does not take it back from the one still running
		const btf *other = nullptr;
		std::thread([&] {
			sdk::detail::lent_kernel_btf second(host);
			other = sdk::vmlinux_btf();
		}).join();
		CHECK(other == hosts.get());
		CHECK(sdk::vmlinux_btf() == hosts.get());
	}
	// taken back at the end of the load
	CHECK(sdk::vmlinux_btf() != hosts.get());
	// the program's own parse can be given back, and is made again when asked
	sdk::release_vmlinux_btf();
	CHECK(sdk::vmlinux_btf() != nullptr);
}
