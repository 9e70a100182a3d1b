// SPDX-License-Identifier: Apache-2.0
// The man pages generated at build time (help2man, from --help) render, and say what --help says.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <regex>
#include <sstream>
#include <set>
#include <string>

#include <unistd.h>

namespace t = procimage::test;

namespace {

// The page as man renders it for a reader, overstrike (bold, underline) taken out.
std::string rendered(const std::string &page)
{
	auto r = t::run({"man", "-l", page}, {{"MANWIDTH", "200"}, {"LANG", "C.UTF-8"}, {"MANPAGER", "cat"}});
	INFO(r.err);
	REQUIRE(r.status == 0);
	std::string plain;
	for (char c : r.out) {
		if (c == '\b') {
			if (!plain.empty())
				plain.pop_back();
		} else {
			plain += c;
		}
	}
	return plain;
}

// Every long option --help lists.
std::set<std::string> long_options(const std::string &bin)
{
	auto r = t::run({bin, "--help"});
	REQUIRE(r.status == 0);
	std::set<std::string> out;
	std::regex opt(R"((?:^  -[A-Za-z] \[ |^  )(--[a-z][a-z-]*))");
	std::istringstream in(r.out);
	std::string line;
	while (std::getline(in, line)) {
		std::smatch m;
		if (std::regex_search(line, m, opt))
			out.insert(m[1]);
	}
	return out;
}

} // namespace

TEST_CASE("man pages: procimage(1) and procimage-ctl(1) render with man -l and list every option of --help")
{
	const std::string dir = t::build_dir() + "/man/";
	if (access((dir + "procimage.1").c_str(), R_OK) != 0)
		SKIP_TEST("no man page in " + dir + ": help2man was not found when the build was configured");
	if (access("/usr/bin/man", X_OK) != 0)
		SKIP_TEST("man is not installed (Debian package man-db)");

	std::string page = rendered(dir + "procimage.1");
	CHECK_THAT(page, Catch::Contains("PROCIMAGE(1)"));
	CHECK_THAT(page, Catch::Contains("SYNOPSIS"));
	CHECK_THAT(page, Catch::Contains("--duration SEC"));
	CHECK_THAT(page, Catch::Contains("stop by itself after SEC seconds"));
	auto opts = long_options(t::procimage_bin());
	CHECK(opts.count("--duration"));
	CHECK(opts.count("--follow"));
	for (const auto &o : opts) {
		INFO("procimage " << o);
		CHECK_THAT(page, Catch::Contains(o));
	}

	std::string ctl = rendered(dir + "procimage-ctl.1");
	CHECK_THAT(ctl, Catch::Contains("PROCIMAGE-CTL(1)"));
	auto ctl_opts = long_options(t::build_dir() + "/procimage-ctl");
	CHECK(ctl_opts.count("--check"));
	for (const auto &o : ctl_opts) {
		INFO("procimage-ctl " << o);
		CHECK_THAT(ctl, Catch::Contains(o));
	}
}
